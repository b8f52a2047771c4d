"""The contract every registered method keeps with the training loop, checked
for all of them at once (timm's ``list_models()`` test), plus adding a method
without touching the package: from a file, and through ``FGVC_PLUGINS``."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fgmodels import registry
from fgmodels.config import ConfigError, check_values, resolve_config
from fgmodels.registry import create_method, get_method_class, list_methods, method_hparams

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
BUILTIN = {"atcnn", "baseline", "clca", "gholm", "lgam", "racnn"}


def _batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % NUM_CLASSES


def _tiny(name: str, **knobs) -> torch.nn.Module:
    cfg = resolve_config({"method": name, "backbone": get_method_class(name).test_backbone, **knobs})
    return create_method(name, NUM_CLASSES, **cfg)


def test_builtin_methods_are_registered() -> None:
    assert BUILTIN <= set(list_methods())


@pytest.mark.parametrize("name", list_methods())
def test_training_step_and_predict(name: str) -> None:
    model = _tiny(name).train()
    model.on_epoch_start(0)
    x, y = _batch()
    out = model.training_step(x, y)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.branch_losses and all(torch.isfinite(v) and not v.requires_grad for v in out.branch_losses.values())
    out.loss.backward()
    # the first parameter of the (first) backbone is its stem: the deepest point of the graph
    backbone = model.backbone if hasattr(model, "backbone") else model.backbones[0]
    stem = next(p for p in backbone.parameters() if p.requires_grad)
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model.predict(x)
    assert logits.shape == (4, NUM_CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_methods())
def test_declared_defaults_are_what_create_method_uses(name: str) -> None:
    declared = {key: k.default for key, k in get_method_class(name).Knobs.declared().items()}
    assert method_hparams(name) == declared == get_method_class(name).hparams
    model = _tiny(name)
    assert model.hp.as_dict() == declared
    assert check_values(name, declared) == declared  # every default passes its own check


def _bad_values(k) -> list:
    """Values just outside a knob's declared bounds / choices, and of the wrong kind."""
    bad: list = []
    step = 1 if k.kind is int else 0.5
    if k.gt is not None:
        bad.append(k.gt)
    if k.ge is not None:
        bad.append(k.ge - step)
    if k.lt is not None:
        bad.append(k.lt)
    if k.le is not None:
        bad.append(k.le + step)
    if k.choices is not None:
        bad.append("no-such-choice")
    if k.kind in (int, float):
        bad.append("abc")
    if k.kind is bool:
        bad.append("yes")
    return bad


@pytest.mark.parametrize("name", list_methods())
def test_out_of_range_knobs_are_refused_naming_the_knob(name: str) -> None:
    tested = 0
    for key, k in get_method_class(name).Knobs.declared().items():
        for value in _bad_values(k):
            with pytest.raises(ConfigError, match=repr(key)):
                check_values(name, {key: value})
            with pytest.raises(ConfigError, match=repr(key)):  # same check in the constructor
                create_method(name, NUM_CLASSES, backbone="test_resnet", **{key: value})
            tested += 1
    assert tested >= len(get_method_class(name).Knobs.declared()) or name == "baseline"


def test_registry_import_lists_every_builtin_method() -> None:
    """Importing the registry alone (a fresh process) registers the built-in methods."""
    code = "from fgmodels.registry import list_methods; print(','.join(list_methods()))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert BUILTIN <= set(out.stdout.strip().split(","))


# ------------------------------------------------------------ a method added from outside
PLUGIN = '''
"""A two-head method written outside the package."""
from dataclasses import dataclass

import torch.nn.functional as F

from fgmodels.knobs import KnobSet, knob
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method


@dataclass
class TwoHeadKnobs(KnobSet):
    alpha: float = knob(0.5, "weight of the second head's loss", ge=0, le=1)


@register_method
class TwoHead(FGVCMethod):
    name = "{name}"
    Knobs = TwoHeadKnobs
    test_backbone = "test_resnet"

    def __init__(self, num_classes, **cfg):
        super().__init__(num_classes, **cfg)
        self.backbone = self.new_backbone()
        self.head = self.new_classifier(self.backbone.num_features)
        self.head2 = self.new_classifier(self.backbone.num_features)

    def training_step(self, images, labels):
        f = self.dropout(self.backbone(images))
        l1, l2 = self.head(f), self.head2(f)
        a, b = F.cross_entropy(l1, labels), F.cross_entropy(l2, labels)
        loss = (1 - self.hp.alpha) * a + self.hp.alpha * b
        return StepOutput(loss=loss, branch_losses={{"h1": a.detach(), "h2": b.detach()}}, logits=l1.detach())

    def predict(self, images):
        f = self.backbone(images)
        return self.head(f) + self.head2(f)
'''


def _write_plugin(folder: Path, module: str, name: str) -> Path:
    path = folder / f"{module}.py"
    path.write_text(PLUGIN.format(name=name))
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *extra.pop("PYTHONPATH", "").split(os.pathsep)])}
    env.update(extra)
    return env


def test_new_method_from_a_temporary_module_trains_in_the_shared_loop(tmp_path, monkeypatch) -> None:
    from fgmodels.engine import fit

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))  # forget it after the test
    path = _write_plugin(tmp_path, "twohead_plugin", "twohead")
    spec = importlib.util.spec_from_file_location("twohead_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert "twohead" in list_methods() and method_hparams("twohead") == {"alpha": 0.5}
    with pytest.raises(ConfigError, match="'alpha'"):
        check_values("twohead", {"alpha": 2})
    cfg = {
        "method": "twohead", "backbone": "test_resnet", "alpha": 0.25, "data": "synthetic",
        "data_root": str(tmp_path / "data"), "synthetic_classes": 3, "synthetic_per_class": 8,
        "synthetic_image_size": 48, "img_size": 32, "resize_size": 40, "epochs": 1, "batch_size": 4,
        "max_train_batches": 3, "max_eval_batches": 1, "sched": "constant", "device": "cpu", "seed": 0,
    }
    result = fit(cfg, tmp_path / "run", progress=False)
    (hist,) = result.history
    assert hist["train_loss"] == pytest.approx(0.75 * hist["train_loss_h1"] + 0.25 * hist["train_loss_h2"], rel=1e-4)
    assert math.isfinite(hist["train_loss"]) and 0.0 <= hist["val_acc"] <= 1.0
    assert result.config["alpha"] == 0.25


def test_plugins_env_registers_methods_in_a_fresh_process(tmp_path) -> None:
    by_path = _write_plugin(tmp_path, "file_plugin", "from_file")
    pkg = tmp_path / "pkgdir"
    pkg.mkdir()
    _write_plugin(pkg, "dotted_plugin", "from_module")
    code = (
        "import torch\n"
        "from fgmodels.registry import list_methods, create_method\n"
        "print(','.join(list_methods()))\n"
        "m = create_method('from_file', 3, backbone='test_resnet', alpha=0.1)\n"
        "print(type(m).__name__, m.hp.alpha)\n"
    )
    env = _env(FGVC_PLUGINS=f"{by_path}, dotted_plugin", PYTHONPATH=str(pkg))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    names, built = out.stdout.strip().splitlines()
    assert {"from_file", "from_module"} | BUILTIN <= set(names.split(","))
    assert built == "TwoHead 0.1"


def test_plugin_errors_name_the_plugin_and_a_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_LOADED_PLUGINS", set())
    missing = tmp_path / "nope.py"
    monkeypatch.setenv("FGVC_PLUGINS", str(missing))
    with pytest.raises(ConfigError, match=rf"plugin '{missing}'.*not a file.*Fix:"):
        list_methods()
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import no_such_module_anywhere\n")
    monkeypatch.setenv("FGVC_PLUGINS", str(broken))
    with pytest.raises(ConfigError, match=r"plugin '.*broken_plugin.py'.*ModuleNotFoundError.*Fix:"):
        get_method_class("baseline")
    monkeypatch.setenv("FGVC_PLUGINS", "no_such_plugin_module")
    with pytest.raises(ConfigError, match=r"plugin 'no_such_plugin_module'.*Fix:"):
        list_methods()
    monkeypatch.delenv("FGVC_PLUGINS")
    assert BUILTIN <= set(list_methods())
