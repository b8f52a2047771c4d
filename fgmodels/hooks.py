"""Hooks into the training loop that tests install (fault injection, probes).

The product needs none: fault injection (a NaN loss, a simulated out-of-memory
error) is test code, so it lives with the tests and reaches the loop only
through this small protocol. With no hook installed the loop iterates over an
empty tuple and does nothing else.

A hook may declare extra config keys (``keys``: {name: default}); the config
module accepts them while the hook is installed, so a search space can drive a
test hook per trial (e.g. a different NaN step per trial). A hook reads them
from ``trainer.cfg``.

Ray runs trials in worker processes that never see an in-process
``install_hook``; they inherit the driver's environment instead. So hooks named
in ``FGVC_HOOKS`` ("package.module:object", comma-separated) are imported and
installed once, when this module is first imported, in every process.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

HOOKS_ENV = "FGVC_HOOKS"


@runtime_checkable
class TrainingHook(Protocol):
    """What the loop calls around every micro-batch step."""

    keys: Mapping[str, Any]  # extra config keys this hook reads from trainer.cfg: {name: default}

    def before_step(self, trainer: Any, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Called with the micro-batch already on the device, before the forward
        pass; may raise ``torch.OutOfMemoryError`` (the loop then retries with a
        smaller micro-batch, as for a real one)."""

    def after_loss(self, trainer: Any, loss: torch.Tensor) -> torch.Tensor:
        """Called with the step's loss before backward; returns the loss to use."""


_installed: list[TrainingHook] = []


def install_hook(hook: TrainingHook) -> None:
    """Install ``hook`` in this process (a no-op when it is already installed)."""
    missing = [name for name in ("keys", "before_step", "after_loss") if not hasattr(hook, name)]
    if missing:
        raise TypeError(
            f"{hook!r} is not a training hook: it lacks {missing}. "
            f"Fix: give it `keys` (a dict, may be empty), `before_step(trainer, images, labels)` "
            f"and `after_loss(trainer, loss)`."
        )
    _check_key_conflicts([*_installed, hook])
    if not any(h is hook for h in _installed):
        _installed.append(hook)


def remove_hook(hook: TrainingHook) -> None:
    """Uninstall ``hook``; a no-op when it is not installed."""
    _installed[:] = [h for h in _installed if h is not hook]


def installed_hooks() -> tuple[TrainingHook, ...]:
    """The hooks the loop calls, in installation order."""
    return tuple(_installed)


def hook_keys() -> dict[str, Any]:
    """{key: default} of the extra config keys that installed hooks declare."""
    keys: dict[str, Any] = {}
    for hook in _installed:
        keys.update(hook.keys)
    return keys


def _check_key_conflicts(hooks: list[TrainingHook]) -> None:
    seen: dict[str, tuple[Any, TrainingHook]] = {}
    for hook in hooks:
        for key, default in hook.keys.items():
            if key in seen and seen[key][1] is not hook and seen[key][0] != default:
                raise ValueError(
                    f"hooks {seen[key][1]!r} and {hook!r} both declare config key {key!r} with different "
                    f"defaults ({seen[key][0]!r} vs {default!r}). Fix: rename the key in one of them."
                )
            seen[key] = (default, hook)


def load_hook(spec: str) -> TrainingHook:
    """Import the object named by ``"package.module:object"``."""
    module_name, sep, attr = spec.strip().partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{HOOKS_ENV} entry {spec!r} must look like 'package.module:object'. Fix: correct {HOOKS_ENV}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"{HOOKS_ENV} names {spec!r} but module {module_name!r} cannot be imported ({err}). "
            f"Fix: put the folder holding {module_name.split('.')[0]!r} on PYTHONPATH or correct {HOOKS_ENV}."
        ) from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{HOOKS_ENV} names {spec!r} but {module_name} has no {attr!r}. Fix: correct {HOOKS_ENV}.") from None


def install_from_env(value: str | None = None) -> list[TrainingHook]:
    """Install every hook named in ``FGVC_HOOKS`` (or ``value``); returns them."""
    value = os.environ.get(HOOKS_ENV, "") if value is None else value
    hooks = [load_hook(spec) for spec in value.split(",") if spec.strip()]
    for hook in hooks:
        install_hook(hook)
    return hooks


install_from_env()
