"""One searched knob of a space file: ``{type: uniform|loguniform|int|choice, ...}``
parsed into a :class:`ParamSpec`. The distribution's own rules (low < high, a
log range above 0, step dividing the range) are checked here; whether a value
suits the knob is asked of ``check_values`` for each choice and both bounds."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search.spaces.checks import checked, closest, default_of, fail, float_text, is_number, is_primitive, same

DIST_TYPES = ("uniform", "loguniform", "int", "choice")
_DIST_FIELDS = {
    "uniform": {"low", "high", "step"},
    "loguniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "choice": {"values"},
}
_EXAMPLE = "{type: loguniform, low: 1.0e-4, high: 1.0e-2} or {type: choice, values: [8, 16]}"


@dataclass(frozen=True)
class ParamSpec:
    """One searched knob: ``uniform``/``loguniform`` floats, ``int`` (optional
    ``step``/``log``) or ``choice`` among ``values``."""

    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    values: tuple[Any, ...] = ()

    @property
    def needs_decoding(self) -> bool:
        """Optuna stores only primitives: a list-valued choice travels as JSON text."""
        return self.type == "choice" and not all(is_primitive(v) for v in self.values)

    @property
    def checked_values(self) -> tuple[Any, ...]:
        """The values that stand for the whole param when it is validated: each
        choice, or both bounds of a range."""
        return self.values if self.type == "choice" else (self.low, self.high)

    def encode(self, value: Any) -> Any:
        """The value as Optuna stores it (JSON text for lists)."""
        if self.type != "choice" or is_primitive(value):
            return value
        return json.dumps(value, sort_keys=True)

    def decode(self, raw: Any) -> Any:
        if not self.needs_decoding:
            return raw
        for v in self.values:
            if same(self.encode(v), raw):
                return v
        raise ValueError(f"{raw!r} is none of the choices {list(self.values)}")

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask Optuna for a value under ``name``; returns the config value (decoded)."""
        if self.type == "uniform":
            return trial.suggest_float(name, self.low, self.high, step=self.step)
        if self.type == "loguniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.type == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return self.decode(trial.suggest_categorical(name, [self.encode(v) for v in self.values]))

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return any(same(self.encode(value), self.encode(v)) for v in self.values)
        if self.type == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                return False
            return self.low <= value <= self.high and (value - self.low) % (self.step or 1) == 0
        return is_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return "choice " + ", ".join(str(v) for v in self.values)
        extra = (f" step {self.step}" if self.step else "") + (" log" if self.log else "")
        return f"{self.type} [{self.low:g}, {self.high:g}]{extra}"


def check_param(source: str, key: str, spec: ParamSpec, method: str, fixed: Mapping[str, Any]) -> None:
    """Every value ``spec`` can stand for must be a valid ``key`` beside ``fixed``."""
    for value in spec.checked_values:
        checked(source, "params", method, {key: value}, fixed)


def parse_param(source: str, key: str, raw: Any, method: str, fixed: Mapping[str, Any]) -> ParamSpec:
    where = f"params.{key}"
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise fail(source, where, f"a param must be a mapping with a `type`, got {raw!r}", f"write e.g. {key}: {_EXAMPLE}")
    kind = raw["type"]
    if kind not in DIST_TYPES:
        raise fail(source, where, f"unknown distribution type {kind!r}{closest(kind, DIST_TYPES)}",
                   f"use one of {list(DIST_TYPES)}")
    extra = set(raw) - _DIST_FIELDS[kind] - {"type"}
    if extra:
        raise fail(source, where, f"{kind} takes no field(s) {sorted(extra)}", f"a {kind} param takes {sorted(_DIST_FIELDS[kind])}")
    if kind == "choice":
        return _parse_choice(source, where, key, raw.get("values"), method, fixed)
    spec = _parse_range(source, where, key, raw, method)
    check_param(source, key, spec, method, fixed)
    return spec


def _parse_choice(source: str, where: str, key: str, values: Any, method: str, fixed: Mapping[str, Any]) -> ParamSpec:
    if not isinstance(values, list) or not values:
        raise fail(source, where, f"choice needs a non-empty list `values`, got {values!r}",
                   f"write {key}: {{type: choice, values: [a, b]}}")
    values = [checked(source, "params", method, {key: v}, fixed)[key] for v in values]  # as check_values reads them
    spec = ParamSpec("choice", values=tuple(values))
    encoded = [json.dumps(spec.encode(v), sort_keys=True) for v in values]
    if len(set(encoded)) != len(encoded):
        raise fail(source, where, f"duplicate choice values in {values!r}", "list every value once")
    return spec


def _parse_range(source: str, where: str, key: str, raw: Mapping[str, Any], method: str) -> ParamSpec:
    kind = raw["type"]
    default = default_of(method, key)  # which distribution suits the knob: its default's kind tells
    if isinstance(default, (bool, str, list, tuple)):
        raise fail(source, where, f"{key!r} is not numeric (default {default!r}); a {kind} range cannot set it",
                   f"use {{type: choice, values: [...]}} for {key}")
    if isinstance(default, int) and kind != "int":
        raise fail(source, where, f"{key!r} is an integer knob (default {default!r}); {kind} would give floats",
                   f"use {{type: int, low: ..., high: ...}} or a choice for {key}")
    missing = {"low", "high"} - set(raw)
    if missing:
        raise fail(source, where, f"{kind} needs {sorted(missing)}", f"write {key}: {{type: {kind}, low: ..., high: ...}}")
    bounds = {}
    for name in ("low", "high", "step"):
        val = raw.get(name)
        if val is None:
            continue
        val = float_text(val) if float_text(val) is not None else val
        if kind == "int" and not (isinstance(val, int) and not isinstance(val, bool)):
            raise fail(source, where, f"int {name} must be an integer, got {val!r}", f"write {name} as a whole number")
        if not is_number(val) or not math.isfinite(val):
            raise fail(source, where, f"{name} must be a finite number, got {val!r}",
                       f"write {name} as a number such as 1.0e-4 (PyYAML reads 1e-4 as text only without the dot)")
        bounds[name] = val
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    if not low < high:
        raise fail(source, where, f"empty or inverted range: low ({low!r}) must be < high ({high!r})",
                   "swap low and high, or move the knob to `fixed` if it should not vary")
    if not isinstance(raw.get("log", False), bool):
        raise fail(source, where, f"log must be true or false, got {raw['log']!r}", "write log: true")
    log = kind == "loguniform" or raw.get("log", False)
    if log and low <= 0:
        raise fail(source, where, f"log range needs low > 0, got low={low!r}",
                   "raise low above 0 (e.g. 1.0e-6) or use type: uniform")
    if step is not None:
        if step <= 0:
            raise fail(source, where, f"step must be > 0, got {step!r}", "use a positive step or drop it")
        if log:
            raise fail(source, where, "Optuna cannot combine log with step", "drop step or log")
        if abs(round((high - low) / step) * step - (high - low)) > 1e-9 * max(1.0, abs(high)):
            raise fail(source, where, f"high - low ({high - low!r}) is not a multiple of step ({step!r})",
                       f"set high to low + k * step, e.g. {low + step * math.floor((high - low) / step)!r}")
    return ParamSpec(kind, low, high, step, log and kind == "int", ())
