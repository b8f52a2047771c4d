"""Trial configuration: one flat dict, so Ray Tune, Optuna, YAML and the CLI all
speak the same language. Defaults live here; a method's own knobs live in its
``hparams``. Unknown keys are errors, never silently ignored.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

TRAIN_DEFAULTS: dict[str, Any] = {
    # what
    "method": "baseline",
    "backbone": "resnet50",
    "pretrained": False,
    "checkpoint_path": None,  # local backbone weights (clusters without internet)
    "drop_rate": 0.0,
    # data
    "data": "synthetic",  # synthetic | cub | aircraft | cars | dogs | imagefolder
    "data_root": None,  # dataset folder; the synthetic set is cached here when given
    "val_fraction": 0.2,  # stratified validation split carved from train
    "split_seed": 0,  # fixes which train images are validation, independent of the training seed
    "img_size": None,  # crop size; None = the dataset's default (448 real, 64 synthetic)
    "resize_size": None,  # resize before crop; None = the dataset's default (510 real)
    "color_jitter": 0.4,
    "synthetic_classes": 10,
    "synthetic_per_class": 60,
    "synthetic_image_size": 80,
    "synthetic_seed": 0,
    "bad_image_policy": "fail",  # fail | skip
    "workers": 0,
    "pipeline": "pil",  # pil (torchvision DataLoader) | cache (uint8 memmap + GPU augment)
    # optimisation
    "epochs": 10,
    "batch_size": 16,
    "opt": "sgd",  # any timm optimizer name: sgd, adamw, adam, lamb, ...
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "sched": "multistep",  # multistep | cosine | constant
    "lr_milestones": [15, 30],
    "lr_gamma": 0.1,
    "warmup_epochs": 0,
    "switch_epoch": None,  # epoch at which a second optimiser phase starts (AT-CNN)
    "opt_after_switch": "sgd",
    "lr_after_switch": 1e-3,
    "grad_clip": None,
    "accum_steps": 1,  # gradient accumulation (OOM fallback keeps batch_size * accum)
    # runtime
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "amp": "auto",  # auto (bf16 on CUDA) | bf16 | off
    "channels_last": False,
    "compile": False,
    "max_train_batches": None,  # cap per epoch (smoke tests, benchmarks)
    "max_eval_batches": None,
    "log_every": 20,
    "inject_nan_at_step": None,  # fault injection: the loss becomes NaN at this global step
    "simulate_oom_above_batch": None,  # fault injection: a step with a larger micro-batch raises OutOfMemoryError
}


# Names people type from other tools, mapped to ours for "did you mean" hints.
_ALIASES = {
    "learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "optimizer": "opt",
    "scheduler": "sched", "num_epochs": "epochs", "model": "backbone", "image_size": "img_size",
}


def suggest_key(key: str, allowed: set[str]) -> str:
    """A '; did you mean ...?' hint, or '' when nothing is close."""
    close = [_ALIASES[key]] if _ALIASES.get(key) in allowed else difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key and a fix."""


def known_keys(method: str) -> set[str]:
    from fgmodels.registry import method_hparams

    return set(TRAIN_DEFAULTS) | set(method_hparams(method))


def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Defaults + method defaults + ``cfg``; rejects keys nobody understands."""
    from fgmodels.registry import get_method_class

    method = cfg.get("method", TRAIN_DEFAULTS["method"])
    try:
        cls = get_method_class(method)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    allowed = set(TRAIN_DEFAULTS) | set(cls.hparams)
    for key in cfg:
        if key not in allowed:
            raise ConfigError(
                f"unknown config key {key!r} for method {method!r}{suggest_key(key, allowed)} "
                f"(method knobs: {sorted(cls.hparams)})"
            )
    out = dict(TRAIN_DEFAULTS)
    out["backbone"] = cls.default_backbone
    out.update(cls.hparams)
    out.update(cfg)
    _check_values(out)
    return out


def _check_values(cfg: dict[str, Any]) -> None:
    def positive(key: str, integer: bool = False) -> None:
        val = cfg[key]
        if val is None or (integer and int(val) != val) or val <= 0:
            kind = "a positive integer" if integer else "positive"
            raise ConfigError(f"config key {key!r} must be {kind}, got {val!r}")

    for key in ("epochs", "batch_size", "accum_steps"):
        positive(key, integer=True)
    positive("lr")
    if not 0.0 < float(cfg["val_fraction"]) < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {cfg['val_fraction']!r}")
    if cfg["bad_image_policy"] not in ("fail", "skip"):
        raise ConfigError(f"bad_image_policy must be 'fail' or 'skip', got {cfg['bad_image_policy']!r}")
    if cfg["pipeline"] not in ("pil", "cache"):
        raise ConfigError(f"pipeline must be 'pil' or 'cache', got {cfg['pipeline']!r}")
    if cfg["sched"] not in ("multistep", "cosine", "constant"):
        raise ConfigError(f"sched must be multistep, cosine or constant, got {cfg['sched']!r}")


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def save_config(cfg: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(_plain(cfg), sort_keys=True))


def _plain(cfg: dict[str, Any]) -> dict[str, Any]:
    """YAML-safe copy (tuples -> lists, numpy scalars -> python)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            v = v.item()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out
