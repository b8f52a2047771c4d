"""Method registry, modelled on timm's ``register_model`` / ``create_model``.

A method is an :class:`~fgmodels.methods.base.FGVCMethod` subclass registered under
a short name. The training loop, the search and the CLI only ever go through
:func:`create_method`, so adding a method never touches them.
"""
from __future__ import annotations

import difflib
from typing import Any, TypeVar

_METHODS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_method(cls: T) -> T:
    """Class decorator: make ``cls`` reachable as ``create_method(cls.name, ...)``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__qualname__}")
    _METHODS[name] = cls
    return cls


def _ensure_builtin_methods() -> None:
    # Importing the package registers every built-in method exactly once.
    import fgmodels.methods  # noqa: F401


def list_methods() -> list[str]:
    _ensure_builtin_methods()
    return sorted(_METHODS)


def get_method_class(name: str) -> type:
    _ensure_builtin_methods()
    try:
        return _METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown method {name!r}; registered methods are {sorted(_METHODS)}.{hint}"
        ) from None


def method_hparams(name: str) -> dict[str, Any]:
    """The method's own knobs and their defaults (copy: callers may mutate it)."""
    return dict(get_method_class(name).hparams)


def create_method(name: str, num_classes: int, **kwargs: Any):
    """Build a registered method. ``kwargs`` may hold any config keys: only the
    backbone options and the method's own ``hparams`` are passed on, so a whole
    trial config can be handed over unchanged."""
    cls = get_method_class(name)
    accepted = set(cls.hparams) | {"backbone", "pretrained", "checkpoint_path", "drop_rate"}
    picked = {k: v for k, v in kwargs.items() if k in accepted}
    return cls(num_classes=num_classes, **picked)

