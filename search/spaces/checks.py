"""Values a space may hold. Every value the loader reads (fixed values, choice
values, range bounds, ``first`` points, ``smoke`` and ``--set``) is judged by
``fgmodels.config.check_values``, the one validation entry point of the
project, so a value the trainer would refuse is refused when the space is read.
This module only adds *where* in the file or the command line the value sits.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from fgmodels.config import TRAIN_DEFAULTS, ConfigError

try:
    from fgmodels.config import check_values
except ImportError:  # fgmodels.config without its single entry point yet: the same checks, here
    def check_values(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Each value against the kind of its default, backbone and optimiser
        names against timm, then the whole config through ``resolve_config``;
        returns the values (a numeric string such as ``"1e-4"`` as a float)."""
        from fgmodels.config import resolve_config, suggest_key
        from fgmodels.config import known_keys as _known

        try:
            allowed = _known(method)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in allowed:
                raise ConfigError(f"unknown config key {key!r} for method {method!r}{suggest_key(key, allowed)}")
            out[key] = _check_kind(method, key, value)
        resolve_config({**out, "method": method})
        return out

    def _check_kind(method: str, key: str, value: Any) -> Any:
        default = default_of(method, key)
        if (default is None or isinstance(default, float)) and float_text(value) is not None:
            value = float_text(value)
        kind: str | None = None
        if isinstance(default, bool):
            kind = None if isinstance(value, bool) else "true or false"
        elif isinstance(default, int):
            kind = None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
        elif isinstance(default, float):
            kind = None if is_number(value) else "a number (write 1.0e-4, not 1e-4, in YAML)"
        elif isinstance(default, str):
            kind = None if isinstance(value, str) else "a string"
        elif isinstance(default, (list, tuple)):
            kind = None if isinstance(value, (list, tuple)) else "a list"
        if kind:
            raise ConfigError(f"{key!r} must be {kind} like its default {default!r}, got {value!r}. "
                              f"Fix: give {key} a value of the same kind as {default!r}")
        if key == "backbone":
            import timm

            if not timm.is_model(value):
                hint = closest(value, timm.list_models(f"*{str(value)[:5]}*"))
                raise ConfigError(f"backbone {value!r} is not a timm model{hint}. Fix: use a name from "
                                  "timm.list_models(), e.g. convnext_small, resnet50, test_convnext")
        if key in ("opt", "opt_after_switch"):
            from timm.optim import list_optimizers

            if value not in list_optimizers():
                raise ConfigError(f"{key} {value!r} is not a timm optimizer{closest(value, list_optimizers())}. "
                                  "Fix: use a name from timm.optim.list_optimizers(), e.g. sgd, adamw")
        return value


class SpaceError(ValueError):
    """A search space that cannot run; the message names file, key and a fix."""


def fail(source: str, where: str, problem: str, fix: str) -> SpaceError:
    return SpaceError(f"{source}: {where}: {problem}. Fix: {fix}")


def closest(word: Any, options: Any) -> str:
    close = difflib.get_close_matches(str(word), sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def checked(source: str, where: str, method: str, values: Mapping[str, Any],
            context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``values`` judged together with ``context`` (values already accepted, for
    the cross-knob rules); returns the checked ``values``. On refusal the error
    points at ``where.<key>`` when one key alone is refused, else at ``where``."""
    context = {k: v for k, v in (context or {}).items() if k != "method" and k not in values}
    given = {k: v for k, v in values.items() if k != "method"}
    try:
        out = check_values(method, {**context, **given})
    except ConfigError as err:
        raise _refused(source, _culprit(where, method, given, context), err) from None
    return {k: (out.get(k, v) if k != "method" else v) for k, v in values.items()}


def _culprit(where: str, method: str, values: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    for key, value in values.items():
        try:
            check_values(method, {**context, key: value})
        except ConfigError:
            return f"{where}.{key}"
    return where


def _refused(source: str, where: str, err: ConfigError) -> SpaceError:
    problem, _, fix = str(err).partition("Fix:")
    return fail(source, where, problem.strip().rstrip("."), fix.strip().rstrip(".") or "change the value named above")


# ------------------------------------------------------------------ small facts
def default_of(method: str, key: str) -> Any:
    """The value ``key`` takes when a config does not give it."""
    from fgmodels.registry import get_method_class

    cls = get_method_class(method)
    if key == "backbone":
        return cls.default_backbone
    return cls.hparams[key] if key in cls.hparams else TRAIN_DEFAULTS.get(key)


def known_methods() -> list[str]:
    from fgmodels.registry import list_methods

    return list_methods()


def known_keys(method: str) -> set[str]:
    from fgmodels.config import known_keys as keys

    return keys(method)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def float_text(v: Any) -> float | None:
    """PyYAML reads ``1e-4`` (no dot) as a string; this is the number meant."""
    if isinstance(v, str) and _NUMBER_TEXT.match(v.strip()):
        return float(v)
    return None


def same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def configs_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
