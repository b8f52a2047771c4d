"""Method registry, modelled on timm's ``register_model`` / ``create_model``.

A method is an :class:`~fgmodels.methods.base.FGVCMethod` subclass registered under
a short name. The training loop, the search and the CLI only ever go through
:func:`create_method`, so adding a method never touches them.

The registry imports no method: importing the package :mod:`fgmodels` imports
:mod:`fgmodels.methods`, whose modules register themselves (and importing this
module imports that package first). Methods kept outside the package are
named in the environment variable ``FGVC_PLUGINS`` (comma-separated dotted
module names or ``.py`` paths); they are imported on the registry's first use,
in the driver and in every Ray worker process, which inherits the environment.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from fgmodels.knobs import ConfigError

PLUGINS_ENV = "FGVC_PLUGINS"

_METHODS: dict[str, type] = {}
_LOADED_PLUGINS: set[str] = set()

T = TypeVar("T", bound=type)


def register_method(cls: T) -> T:
    """Class decorator: make ``cls`` reachable as ``create_method(cls.name, ...)``."""
    from fgmodels.config import TRAIN_DEFAULTS

    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    clash = sorted(set(cls.Knobs.declared()) & set(TRAIN_DEFAULTS))
    if clash:
        raise TypeError(
            f"method {name!r} declares knobs {clash} that are also training keys; a config key means one "
            f"thing. Fix: rename the knobs (e.g. prefix them with {name}_)."
        )
    old = _METHODS.get(name)
    reload = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
    if old is not None and old is not cls and not reload:
        raise ValueError(f"method {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _METHODS[name] = cls
    return cls


def _plugin_entries() -> list[str]:
    return [e.strip() for e in os.environ.get(PLUGINS_ENV, "").split(",") if e.strip()]


def _import_plugin(entry: str) -> None:
    """Import one ``FGVC_PLUGINS`` entry: a ``.py`` path or a dotted module name."""
    is_path = entry.endswith(".py") or "/" in entry or os.sep in entry
    module_name = entry
    try:
        if is_path:
            path = Path(entry).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(
                    f"plugin {entry!r} in {PLUGINS_ENV} is not a file. "
                    f"Fix: give the path of an existing .py file, or a dotted module name."
                )
            digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
            module_name = f"fgvc_plugin_{path.stem}_{digest}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(entry)
    except ConfigError:
        raise
    except Exception as err:
        if is_path:
            sys.modules.pop(module_name, None)
        raise ConfigError(
            f"plugin {entry!r} in {PLUGINS_ENV} failed to import: {type(err).__name__}: {err}. "
            f"Fix: correct the module, make it importable (PYTHONPATH) in the driver and every worker, "
            f"or remove it from {PLUGINS_ENV}."
        ) from err


def _load_plugins() -> None:
    for entry in _plugin_entries():
        if entry not in _LOADED_PLUGINS:
            _import_plugin(entry)
            _LOADED_PLUGINS.add(entry)


def list_methods() -> list[str]:
    _load_plugins()
    return sorted(_METHODS)


def get_method_class(name: str) -> type:
    _load_plugins()
    try:
        return _METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown method {name!r}; registered methods are {sorted(_METHODS)}.{hint}"
        ) from None


def method_hparams(name: str) -> dict[str, Any]:
    """The method's own knobs and their defaults (a fresh dict: callers may mutate it)."""
    return get_method_class(name).Knobs.defaults()


def create_method(name: str, num_classes: int, **cfg: Any):
    """Build a registered method. ``cfg`` may hold any config keys: only the
    backbone options and the method's own knobs are passed on, so a whole
    trial config can be handed over unchanged."""
    cls = get_method_class(name)
    accepted = cls.config_keys()
    return cls(num_classes, **{k: v for k, v in cfg.items() if k in accepted})
