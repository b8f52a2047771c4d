"""Trial configuration: one flat dict, so Ray Tune, Optuna, YAML and the CLI all
speak the same language.

The training keys are declared here (:data:`TRAIN_KNOBS`), a method's own knobs
in its :class:`~fgmodels.knobs.KnobSet`; extra keys of installed training hooks
come from :func:`fgmodels.hooks.hook_keys`. :func:`check_values` is the one
place where values are judged: the search-space loader, ``--set``, the driver
and the trainer all call it (through :func:`resolve_config` or directly), so a
bad value fails the same way everywhere, before any work starts. Unknown keys
are errors, never silently ignored.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Mapping

import yaml

from fgmodels.data.transforms import RESIZE_MODES
from fgmodels.knobs import ConfigError, Knob

__all__ = [
    "AUTO", "AutoKnob", "ConfigError", "TRAIN_KNOBS", "TRAIN_DEFAULTS", "check_values", "known_keys", "load_config",
    "resolve_config", "save_config", "suggest_key",
]


# ------------------------------------------------------------------ rules for names
def _registered_method(name: str) -> str | None:
    from fgmodels.registry import list_methods

    methods = list_methods()
    return None if name in methods else f"is not a registered method{_close(name, methods)}; registered: {methods}"


def _timm_model(name: str) -> str | None:
    from fgmodels.backbones import backbone_name_problem

    return backbone_name_problem(name)


def _timm_optimizer(name: str) -> str | None:
    from timm.optim import list_optimizers

    names = list_optimizers()
    if name in names:
        return None
    return f"is not a timm optimizer{_close(name, names)}"


def _dataset(name: str) -> str | None:
    from fgmodels.data.source import LOADERS

    names = ["synthetic", *LOADERS]
    return None if name in names else f"is not a known dataset{_close(name, names)}; known: {names}"


def _synthetic_classes(n: int) -> str | None:
    from fgmodels.data.synthetic import MAX_CLASSES

    return None if n <= MAX_CLASSES else f"is more than the {MAX_CLASSES} classes the synthetic generator can draw"


def _device(name: str) -> str | None:
    if name == "auto":
        return None
    import torch

    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return "is not a device name"
    return None


def _epoch_list(values: list) -> str | None:
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    return None if ok else "is not a list of epoch numbers > 0"


def _tag_syntax(tag: str) -> str | None:
    return "is a whole model name; give only the part after the dot" if "." in tag or not tag else None


def _backbone_tag(cls: type, values: Mapping[str, Any], out: Mapping[str, Any]) -> None:
    """``pretrained_tag`` is judged with the backbone it names weights of (the
    method's paper backbone when none is given): timm must have that pair."""
    if out.get("pretrained_tag") is None:
        return
    from fgmodels.backbones import timm_name

    timm_name(out.get("backbone") or values.get("backbone") or cls.default_backbone, out["pretrained_tag"])


def _close(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(str(name), candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------ the training keys
AUTO = "auto"  # the value that leaves a runtime key to fgmodels.auto


class AutoKnob(Knob):
    """A knob whose default ``auto`` is decided per trial from its device and
    resources (:func:`fgmodels.auto.resolve_auto`); any other value is checked
    as ``kind``. Declared with ``kind`` because the default says nothing about it."""

    def check(self, value: Any, name: str, owner: str = "config key") -> Any:
        return AUTO if value == AUTO and isinstance(value, str) else super().check(value, name, owner)

    @property
    def requirement(self) -> str:
        return f"{AUTO!r} or {super().requirement}"


_OPT_HINT = "use a name from timm.optim.list_optimizers(), e.g. sgd, adamw"
TRAIN_KNOBS: dict[str, Knob] = {
    # what
    "method": Knob("baseline", "registered method name", rule=_registered_method,
                   hint="use a name from fgmodels.registry.list_methods()"),
    "backbone": Knob("resnet50", "timm model name; a method without it uses its paper backbone", rule=_timm_model,
                     hint="use a name from timm.list_models(), e.g. convnext_small, resnet50, test_convnext"),
    "pretrained": Knob(False, "load timm's pretrained weights (needs the hub, or checkpoint_path)"),
    "checkpoint_path": Knob(None, "local backbone weights file (clusters without internet)", kind=str),
    "pretrained_tag": Knob(None, "which timm weights of the backbone (e.g. fb_in22k_ft_in1k, tv_in1k); None = "
                                 "timm's default tag", kind=str, rule=_tag_syntax,
                           hint="use a tag from timm.list_pretrained('<backbone>.*'), without the backbone name"),
    "drop_rate": Knob(0.0, "dropout before the classifier(s)", ge=0, lt=1),
    # data
    "data": Knob("synthetic", "dataset: synthetic | cub | aircraft | cars | dogs | imagefolder", rule=_dataset,
                 hint="use one of the known datasets"),
    "data_root": Knob(None, "dataset folder; the synthetic set is cached here when given", kind=str),
    "val_fraction": Knob(0.2, "stratified validation split carved from train; 0 = none (a final fit on all of it)",
                         ge=0, lt=1),
    "split_seed": Knob(0, "fixes which train images are validation, independent of the training seed"),
    "resize": Knob(None, "square (resize to resize_size x resize_size, crop img_size) | shorter (shorter side to "
                   "resize_size, crop) | direct (resize to img_size x img_size, no crop); None or auto = the "
                   "dataset's default (square; dogs: direct)", kind=str, choices=(AUTO, *RESIZE_MODES)),
    "img_size": Knob(None, "model input side; None = the dataset's default (448 real, 64 synthetic)", kind=int, gt=0),
    "resize_size": Knob(None, "side of the resize before the crop (square, shorter); None = the dataset's default "
                        "(510 real, 72 synthetic)", kind=int, gt=0),
    "color_jitter": Knob(0.4, "colour-jitter strength of the training transform", ge=0),
    "synthetic_classes": Knob(10, "classes of the synthetic set", ge=2, rule=_synthetic_classes),
    "synthetic_per_class": Knob(60, "images per class of the synthetic set (one train, one test at least)", ge=2),
    "synthetic_image_size": Knob(80, "side of the synthetic images in pixels (legible class part)", ge=48),
    "synthetic_seed": Knob(0, "seed of the synthetic set"),
    "bad_image_policy": Knob("fail", "an image that fails to decode: fail the run or skip it", choices=("fail", "skip")),
    "workers": AutoKnob(AUTO, "DataLoader worker processes (pil); auto = the trial's CPUs - 1, at most 8",
                        kind=int, ge=0),
    "pipeline": Knob(AUTO, "auto | pil (torchvision DataLoader) | cache (uint8 memmap + GPU augment)",
                     choices=(AUTO, "pil", "cache")),
    # optimisation
    "epochs": Knob(10, "training epochs", gt=0),
    "batch_size": Knob(16, "images per optimiser step", gt=0),
    "opt": Knob("sgd", "any timm optimizer name: sgd, adamw, adam, lamb, ...", rule=_timm_optimizer,
                hint=_OPT_HINT),
    "lr": Knob(1e-3, "base learning rate", gt=0),
    "weight_decay": Knob(1e-4, "weight decay of the matrices (not of biases and norms)", ge=0),
    "momentum": Knob(0.9, "momentum of SGD-like optimisers", ge=0),
    "sched": Knob("multistep", "learning-rate schedule", choices=("multistep", "cosine", "constant")),
    "lr_milestones": Knob([15, 30], "multistep: epochs at which the lr is multiplied by lr_gamma", rule=_epoch_list),
    "lr_gamma": Knob(0.1, "multistep: lr factor at each milestone", gt=0),
    "warmup_epochs": Knob(0, "linear warm-up epochs of the first phase", ge=0),
    "switch": Knob("epoch", "when the second optimiser phase starts: at switch_epoch, or on a val_acc plateau "
                   "(from the best weights; without validation at switch_epoch)", choices=("epoch", "plateau")),
    "switch_epoch": Knob(None, "epoch at which a second optimiser phase starts (AT-CNN)", kind=int, ge=1),
    "switch_patience": Knob(3, "switch: plateau: epochs without a val_acc improvement before the switch", ge=1),
    "opt_after_switch": Knob("sgd", "optimizer of the second phase", rule=_timm_optimizer, hint=_OPT_HINT),
    "lr_after_switch": Knob(1e-3, "learning rate of the second phase", gt=0),
    "grad_clip": Knob(None, "clip the gradient norm to this value", kind=float, gt=0),
    "accum_steps": Knob(1, "gradient accumulation (the OOM fallback keeps batch_size * accum)", gt=0),
    # runtime
    "seed": Knob(0, "training seed (weights, augmentation, sampling)"),
    "device": Knob("auto", "auto | cpu | cuda | cuda:N", rule=_device, hint="use auto, cpu, cuda or cuda:N"),
    "amp": Knob(AUTO, "auto (bf16 on CUDA from sm 8.0) | bf16 | off", choices=(AUTO, "bf16", "off")),
    "channels_last": AutoKnob(AUTO, "channels-last memory format for images and model", kind=bool),
    "compile": AutoKnob(AUTO, "torch.compile the backbones; auto = on CUDA for static-shape methods", kind=bool),
    "max_train_batches": Knob(None, "cap per epoch (smoke tests, benchmarks)", kind=int, gt=0),
    "max_eval_batches": Knob(None, "cap per evaluation", kind=int, gt=0),
    "log_every": Knob(20, "steps between loss logs and finiteness checks", gt=0),
}

# The {key: default} view that callers read.
TRAIN_DEFAULTS: dict[str, Any] = {key: k.default for key, k in TRAIN_KNOBS.items()}

# Names people type from other tools, mapped to ours for "did you mean" hints.
_ALIASES = {
    "learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "optimizer": "opt",
    "scheduler": "sched", "num_epochs": "epochs", "model": "backbone", "image_size": "img_size",
}


def suggest_key(key: str, allowed: set[str]) -> str:
    """A '; did you mean ...?' hint, or '' when nothing is close."""
    close = [_ALIASES[key]] if _ALIASES.get(key) in allowed else difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _hook_keys() -> dict[str, Any]:
    from fgmodels.hooks import hook_keys

    return hook_keys()


def _method_class(method: str) -> type:
    from fgmodels.registry import get_method_class

    if not isinstance(method, str):
        raise ConfigError(f"config key 'method' must be a string, got {method!r}. Fix: name a registered method.",
                          key="method")
    try:
        return get_method_class(method)
    except KeyError as err:
        raise ConfigError(f"{err.args[0]}. Fix: set method to a registered name.", key="method") from None


def known_keys(method: str) -> set[str]:
    """Every key a config for ``method`` may hold."""
    return set(TRAIN_KNOBS) | set(_method_class(method).Knobs.declared()) | set(_hook_keys())


def check_values(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every given key for ``method``; returns the values coerced (``"1e-4"`` -> 1e-4).

    Training keys and the method's knobs are judged by their declarations; keys
    of installed hooks pass as they are. Cross-knob rules of the method are
    checked with the defaults for the knobs not given. Raises :class:`ConfigError`
    naming the key, the valid range and a fix.
    """
    cls = _method_class(method)
    declared = cls.Knobs.declared()
    hooks = _hook_keys()
    out: dict[str, Any] = {}
    method_values: dict[str, Any] = {}
    for key, value in values.items():
        if key in TRAIN_KNOBS:
            out[key] = TRAIN_KNOBS[key].check(value, key)
        elif key in declared:
            out[key] = method_values[key] = value
        elif key in hooks:
            out[key] = value
        else:
            allowed = set(TRAIN_KNOBS) | set(declared) | set(hooks)
            hint = suggest_key(key, allowed)
            raise ConfigError(
                f"unknown config key {key!r} for method {method!r}{hint}{'' if hint else '.'} "
                f"Fix: use a training key (fgmodels.config.TRAIN_DEFAULTS) or one of {method}'s knobs "
                f"{sorted(declared)}.",
                key=key,
            )
    _backbone_tag(cls, values, out)
    # per-knob checks, then the cross-knob rules with defaults for the knobs not given
    knobs = cls.Knobs.build(method_values, owner=method).as_dict()
    out.update({key: knobs[key] for key in method_values})
    return {key: out[key] for key in values}


def resolve_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults + hook defaults + the method's backbone and knob defaults + ``cfg``, checked."""
    method = cfg.get("method", TRAIN_DEFAULTS["method"])
    cls = _method_class(method)
    checked = check_values(method, cfg)
    out = copy.deepcopy(TRAIN_DEFAULTS)
    out.update(_hook_keys())
    out["backbone"] = cls.default_backbone
    out.update(cls.Knobs.defaults())
    out.update(checked)
    out["method"] = method
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist. Fix: give the path of an existing YAML file.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of key: value, got {type(data).__name__}. "
            f"Fix: write one 'key: value' per line."
        )
    return data


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(_plain(cfg), sort_keys=True))


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """YAML-safe copy (tuples -> lists, numpy scalars -> python)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            v = v.item()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out
