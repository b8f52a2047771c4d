"""Which backbone weights a run starts from: ``pretrained_tag`` (timm's
``<backbone>.<tag>``) and the two offline routes (``checkpoint_path``, a local
Hugging Face cache). Weights are compared tensor by tensor with the file the
test itself wrote; the valid tags are written out here, not read from the code.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from fgmodels.backbones import create_backbone
from fgmodels.config import ConfigError, check_values
from fgmodels.registry import create_method

REPO = Path(__file__).resolve().parent.parent


def _save(model: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


# ------------------------------------------------------------------ pretrained_tag
def test_tag_reaches_timm() -> None:
    model = create_backbone("test_resnet", pretrained=False, pretrained_tag="r160_in1k")
    assert model.pretrained_cfg["tag"] == "r160_in1k"
    assert model.pretrained_cfg["architecture"] == "test_resnet"


@pytest.mark.parametrize("method,values", [
    ("baseline", {"backbone": "resnet50", "pretrained_tag": "tv_in1k"}),
    ("gholm", {"backbone": "convnext_small", "pretrained_tag": "fb_in22k_ft_in1k"}),
    ("gholm", {"pretrained_tag": "fb_in1k"}),  # the method's paper backbone, convnext_small
    ("atcnn", {"backbone": "inception_v3", "pretrained_tag": "tf_in1k"}),
])
def test_known_tags_pass(method: str, values: dict) -> None:
    assert check_values(method, values) == values


@pytest.mark.parametrize("method,values,listed", [
    ("baseline", {"backbone": "resnet50", "pretrained_tag": "fb_in22k"}, "tv_in1k"),
    ("gholm", {"pretrained_tag": "tv_in1k"}, "fb_in22k_ft_in1k"),  # convnext_small has no torchvision weights
    ("racnn", {"backbone": "vgg19", "pretrained_tag": "in1k"}, "tv_in1k"),
])
def test_unknown_tag_lists_the_valid_ones(method: str, values: dict, listed: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_values(method, values)
    assert err.value.key == "pretrained_tag"
    assert listed in str(err.value) and "Fix:" in str(err.value)


def test_tag_is_given_once() -> None:
    with pytest.raises(ConfigError, match="only the part after the dot"):
        check_values("baseline", {"pretrained_tag": "resnet50.tv_in1k"})
    with pytest.raises(ConfigError, match="already names the tag"):
        check_values("baseline", {"backbone": "resnet50.a1_in1k", "pretrained_tag": "tv_in1k"})
    with pytest.raises(ConfigError, match="no pretrained tag 'bogus'"):
        check_values("baseline", {"backbone": "resnet50.bogus"})


# ------------------------------------------------------------------ checkpoint_path
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_path_loads_the_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=1000)  # as a classifier: the head is dropped on load
    saved = _save(source, tmp_path / f"w{suffix}")
    model = create_method("baseline", 5, backbone="test_resnet", pretrained=False,
                          checkpoint_path=str(tmp_path / f"w{suffix}"))
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in saved if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)
    fresh = create_method("baseline", 5, backbone="test_resnet", pretrained=False).backbone.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], saved["conv1.0.weight"])  # the test could fail


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    _save(timm.create_model("test_convnext", num_classes=1000), tmp_path / "convnext.safetensors")
    with pytest.raises(ConfigError) as err:
        create_backbone("test_resnet", checkpoint_path=str(tmp_path / "convnext.safetensors"))
    assert err.value.key == "checkpoint_path"
    assert "does not hold weights of backbone 'test_resnet'" in str(err.value) and "Fix:" in str(err.value)


# ------------------------------------------------------------------ offline Hugging Face cache
def _fill_hf_cache(home: Path, repo_id: str) -> dict[str, torch.Tensor]:
    """The layout huggingface_hub reads offline: hub/models--org--name/{refs/main, snapshots/<rev>/}."""
    folder = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (folder / "snapshots" / "rev0").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("rev0")
    torch.manual_seed(2)
    return _save(timm.create_model("test_resnet", num_classes=1000), folder / "snapshots" / "rev0" / "model.safetensors")


_LOAD = textwrap.dedent("""
    import sys
    from safetensors.torch import save_file
    from fgmodels.backbones import create_backbone
    try:
        model = create_backbone("test_resnet", pretrained=True, pretrained_tag="r160_in1k")
    except FileNotFoundError as err:
        print(err)
        sys.exit(3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
""")


def _load_offline(home: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _LOAD, str(out)], env=env, capture_output=True, text=True, timeout=120)


def test_offline_hf_cache_gives_the_tagged_weights(tmp_path: Path) -> None:
    repo_id = timm.create_model("test_resnet.r160_in1k").pretrained_cfg["hf_hub_id"]
    saved = _fill_hf_cache(tmp_path / "hf", repo_id)
    done = _load_offline(tmp_path / "hf", tmp_path / "out.safetensors")
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = load_file(str(tmp_path / "out.safetensors"))
    assert loaded and all(torch.equal(v, saved[k]) for k, v in loaded.items())


def test_offline_without_the_weights_says_how(tmp_path: Path) -> None:
    done = _load_offline(tmp_path / "empty", tmp_path / "out.safetensors")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "HF_HUB_OFFLINE=1" in done.stdout and "checkpoint_path" in done.stdout and "Fix:" in done.stdout
