"""timm backbone construction shared by every method.

Real weights come from timm (``pretrained=True``, needs the hub or its local
cache) or from a local file (``checkpoint_path``), which is how clusters without
internet load them. ``pretrained_tag`` picks which of timm's weights for the
architecture (``convnext_small`` + ``fb_in22k_ft_in1k`` -> timm's
``convnext_small.fb_in22k_ft_in1k``): the papers' results depend on it (an
ImageNet-21k start is worth points on CUB), so it is a config key, checked
against timm's list before any work starts.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn

from fgmodels.knobs import ConfigError


def backbone_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a timm model name (None if it is one).

    A name with a pretrained tag (``convnext_small.fb_in22k``) is accepted when
    timm has that tag for the architecture."""
    arch, _, tag = name.partition(".")
    if tag and timm.is_model(arch):
        return pretrained_tag_problem(arch, tag)
    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(f"*{name[:5]}*"), n=1)
    return f"is not a timm model (did you mean {close[0]!r}?)" if close else "is not a timm model"


def pretrained_tags(arch: str) -> list[str]:
    """The pretrained tags timm knows for ``arch`` (``resnet50`` -> ``tv_in1k``, ``a1_in1k``, ...)."""
    return [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*") if n.partition(".")[0] == arch]


def pretrained_tag_problem(arch: str, tag: str) -> str | None:
    """What is wrong with ``tag`` as a pretrained tag of ``arch`` (None if timm has it)."""
    tags = pretrained_tags(arch)
    if tag in tags:
        return None
    close = difflib.get_close_matches(tag, tags, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"has no pretrained tag {tag!r} in timm{hint}; its tags: {tags or 'none'}"


def timm_name(name: str, tag: str | None) -> str:
    """The name timm.create_model takes: ``arch.tag``, or ``name`` when no tag is set.

    Raises ConfigError when the tag is unknown, or when the backbone name
    already carries another tag (two places saying which weights: refused)."""
    if tag is None:
        return name
    arch, _, own = name.partition(".")
    if own and own != tag:
        raise ConfigError(f"backbone {name!r} already names the tag {own!r}, but pretrained_tag is {tag!r}. "
                          f"Fix: give the tag once: backbone {arch!r} with pretrained_tag {tag!r}",
                          key="pretrained_tag")
    problem = pretrained_tag_problem(arch, tag)
    if problem:
        raise ConfigError(f"backbone {arch!r} {problem}. Fix: set pretrained_tag to one of those tags, or leave it "
                          f"out for timm's default weights", key="pretrained_tag")
    return f"{arch}.{tag}"


def create_backbone(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    pretrained_tag: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm model without classifier (``num_classes=0``).

    ``checkpoint_path`` points timm's pretrained loader at a local file, so the
    usual pretrained-weight adaptation (e.g. dropping the old head) still runs;
    a file saved from another architecture is refused with a ConfigError.
    """
    problem = backbone_name_problem(name)
    if problem:
        raise ConfigError(
            f"backbone {name!r} {problem}. Fix: use a name from timm.list_models('*{name[:6]}*').", key="backbone"
        )
    full = timm_name(name, pretrained_tag)
    extra: dict[str, Any] = dict(kwargs)
    if not checkpoint_path:
        try:
            return timm.create_model(full, pretrained=pretrained, num_classes=0, **extra)
        except OSError as err:  # no internet and not in the local Hugging Face cache
            raise FileNotFoundError(
                f"cannot load timm's weights {full!r}: {str(err)[:200]}. Fix: on a machine without internet, "
                f"copy a Hugging Face cache holding them (HF_HOME) and set HF_HUB_OFFLINE=1, or set "
                f"checkpoint_path to a local weights file") from None
    path = Path(checkpoint_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone checkpoint {path} does not exist; give an existing local "
            f"weights file or use pretrained=True with internet access"
        )
    _check_weights_file(full, path)
    extra["pretrained_cfg_overlay"] = dict(file=str(path))
    return timm.create_model(full, pretrained=True, num_classes=0, **extra)


def _check_weights_file(full: str, path: Path) -> None:
    """Refuse a file that does not hold this architecture's weights: timm's
    loader drops the classifier and then loads non-strictly, so a file saved
    from another model would leave the backbone silently at random weights.
    Compared on the plain model (built on the meta device: no memory, no time)."""
    import torch
    from timm.models import load_state_dict

    with torch.device("meta"):
        expected = timm.create_model(full, pretrained=False, num_classes=0).state_dict()
    try:
        state = load_state_dict(str(path))
    except Exception as err:  # not a weights file at all
        raise ConfigError(f"checkpoint_path {path} is not a readable weights file: {str(err)[:200]}. Fix: give "
                          f"a state_dict saved with torch.save or safetensors", key="checkpoint_path") from None
    wrong = [k for k, v in expected.items() if not k.endswith("num_batches_tracked")
             and (k not in state or tuple(state[k].shape) != tuple(v.shape))]
    if wrong:
        raise ConfigError(
            f"checkpoint_path {path} does not hold weights of backbone {full!r}: {len(wrong)} of its "
            f"{len(expected)} tensors are missing or of another shape (e.g. {wrong[:3]}). Fix: give a file "
            f"saved from {full.partition('.')[0]!r} (its state_dict as .pth or .safetensors), or change backbone",
            key="checkpoint_path")
