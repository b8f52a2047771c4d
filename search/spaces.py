"""Search spaces: ``spaces/<name>.yaml`` -> validated :class:`SearchSpace` -> Optuna.

Spaces are data (see ``/work/notes/SPACE_FORMAT.md``). Everything is checked when
a space is loaded, before any trial runs: a typo in a knob name must cost a second,
not a night of GPU time. Every :class:`SpaceError` names the file, the key and a fix.

How a space reaches the trainable (the contract with ``search/tuner.py``)
---------------------------------------------------------------------------
``OptunaSearch(space=space.define_by_run, points_to_evaluate=space.points_to_evaluate())``
runs :meth:`SearchSpace.define_by_run` on an Optuna trial and hands Ray
``unflatten_dict({**suggested_params, **returned_dict})`` (ray/tune/search/optuna/
optuna_search.py, ``_suggest_from_define_by_run_func`` + ``suggest``): the
suggested params under their Optuna names, overlaid with the returned constants,
then split on ``/`` into nested dicts.

* One-method space: the Optuna name of a knob IS its config key (``lr``, ``mu``),
  so Ray's config is already a flat, plain fgmodels config.
* Union (``include:`` or ``"A,B"``): ``method`` is a categorical; every other knob
  is named ``<method>/<key>`` (``gholm/lr``). Prefixing keeps a separate TPE
  history per method (a good lr for one method says nothing about another) and
  lets a knob have different choices per method (Optuna refuses a categorical
  whose choices change under one name). Ray therefore delivers
  ``{"method": "gholm", "gholm": {"lr": ..., "mu": ...}, <gholm's fixed keys>}``.
* :func:`to_trial_config` (the trainable calls it first) lifts the chosen method's
  sub-dict to the top level; the result holds plain config keys only.
* Choice values Optuna cannot store (lists) are offered to Optuna as JSON strings;
  ``define_by_run`` also returns the decoded value under the same Optuna name, so
  it overrides the string and the config always carries the real value.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fgmodels.config import TRAIN_DEFAULTS, ConfigError, resolve_config

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
DIST_TYPES = ("uniform", "loguniform", "int", "choice")
_DIST_FIELDS = {
    "uniform": {"low", "high", "step"},
    "loguniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "choice": {"values"},
}
_SECTIONS = ("description", "fixed", "params", "first", "smoke", "include")
_UNION_SECTIONS = ("description", "include", "fixed", "smoke")
SEP = "/"  # Optuna-name separator in unions; Ray's unflatten_dict nests on it


class SpaceError(ValueError):
    """A search space that cannot run; the message names file, key and a fix."""


def _fail(source: str, where: str, problem: str, fix: str) -> SpaceError:
    return SpaceError(f"{source}: {where}: {problem}. Fix: {fix}")


def _closest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------- values
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _float_string(v: Any) -> float | None:
    """PyYAML reads ``1e-4`` (no dot) as a string; accept it as the number meant."""
    if isinstance(v, str) and _NUMBER_TEXT.match(v.strip()):
        return float(v)
    return None


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _method_default(method: str, key: str) -> Any:
    from fgmodels.registry import get_method_class

    cls = get_method_class(method)
    if key == "backbone":
        return cls.default_backbone
    return cls.hparams[key] if key in cls.hparams else TRAIN_DEFAULTS.get(key)


def _known_methods() -> list[str]:
    from fgmodels.registry import list_methods

    return list_methods()


def _known_keys(method: str) -> set[str]:
    from fgmodels.config import known_keys

    return known_keys(method)


def _check_value(source: str, where: str, key: str, value: Any, method: str) -> Any:
    """The value a config key may take, judged by the kind of its default; returns
    it (a numeric string such as ``"1e-4"`` becomes a float)."""
    default = _method_default(method, key)
    if (default is None or isinstance(default, float)) and _float_string(value) is not None:
        value = _float_string(value)
    kind: str | None = None
    if isinstance(default, bool):
        kind = None if isinstance(value, bool) else "true or false"
    elif isinstance(default, int):
        kind = None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    elif isinstance(default, float):
        kind = None if _is_number(value) else "a number (write 1.0e-4, not 1e-4, in YAML)"
    elif isinstance(default, str):
        kind = None if isinstance(value, str) else "a string"
    elif isinstance(default, (list, tuple)):
        kind = None if isinstance(value, (list, tuple)) else "a list"
    if kind:
        raise _fail(source, where, f"{key!r} must be {kind} like its default {default!r}, got {value!r}",
                    f"give {key} a value of the same kind as {default!r}")
    if key == "backbone":
        import timm

        if not timm.is_model(value):
            hint = _closest(value, timm.list_models(f"*{str(value)[:5]}*"))
            raise _fail(source, where, f"backbone {value!r} is not a timm model{hint}",
                        "use a name from timm.list_models(), e.g. convnext_small, resnet50, test_convnext")
    if key in ("opt", "opt_after_switch"):
        from timm.optim import list_optimizers

        if value not in list_optimizers():
            raise _fail(source, where, f"{key} {value!r} is not a timm optimizer{_closest(value, list_optimizers())}",
                        "use a name from timm.optim.list_optimizers(), e.g. sgd, adamw")
    return value


# --------------------------------------------------------------------- one knob
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
        return self.type == "choice" and not all(_is_primitive(v) for v in self.values)

    def encode(self, value: Any) -> Any:
        """The value as Optuna stores it (JSON string for lists)."""
        if self.type != "choice" or _is_primitive(value):
            return value
        return json.dumps(value, sort_keys=True)

    def decode(self, raw: Any) -> Any:
        if not self.needs_decoding:
            return raw
        for v in self.values:
            if _same(self.encode(v), raw):
                return v
        raise ValueError(f"{raw!r} is none of the choices {list(self.values)}")

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask Optuna for a value; returns the config value (decoded)."""
        if self.type == "uniform":
            return trial.suggest_float(name, self.low, self.high, step=self.step)
        if self.type == "loguniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.type == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return self.decode(trial.suggest_categorical(name, [self.encode(v) for v in self.values]))

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return any(_same(self.encode(value), self.encode(v)) for v in self.values)
        if self.type == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                return False
            return self.low <= value <= self.high and (value - self.low) % (self.step or 1) == 0
        return _is_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return "choice " + ", ".join(str(v) for v in self.values)
        extra = (f" step {self.step}" if self.step else "") + (" log" if self.log else "")
        return f"{self.type} [{self.low:g}, {self.high:g}]{extra}"


def _parse_param(source: str, key: str, raw: Any, method: str) -> ParamSpec:
    where = f"params.{key}"
    example = "{type: loguniform, low: 1.0e-4, high: 1.0e-2} or {type: choice, values: [8, 16]}"
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise _fail(source, where, f"a param must be a mapping with a `type`, got {raw!r}", f"write e.g. {key}: {example}")
    kind = raw["type"]
    if kind not in DIST_TYPES:
        raise _fail(source, where, f"unknown distribution type {kind!r}{_closest(kind, DIST_TYPES)}",
                    f"use one of {list(DIST_TYPES)}")
    extra = set(raw) - _DIST_FIELDS[kind] - {"type"}
    if extra:
        raise _fail(source, where, f"{kind} takes no field(s) {sorted(extra)}",
                    f"a {kind} param takes {sorted(_DIST_FIELDS[kind])}")
    default = _method_default(method, key)
    if kind == "choice":
        return _parse_choice(source, where, key, raw.get("values"), method)
    if isinstance(default, (bool, str, list, tuple)):
        raise _fail(source, where, f"{key!r} is not numeric (default {default!r}); a {kind} range cannot set it",
                    f"use {{type: choice, values: [...]}} for {key}")
    if isinstance(default, int) and kind != "int":
        raise _fail(source, where, f"{key!r} is an integer knob (default {default!r}); {kind} would give floats",
                    f"use {{type: int, low: ..., high: ...}} or a choice for {key}")
    missing = {"low", "high"} - set(raw)
    if missing:
        raise _fail(source, where, f"{kind} needs {sorted(missing)}", f"write {key}: {{type: {kind}, low: ..., high: ...}}")
    bounds = {}
    for name in ("low", "high", "step"):
        val = raw.get(name)
        if val is None:
            continue
        val = _float_string(val) if _float_string(val) is not None else val
        if kind == "int" and not (isinstance(val, int) and not isinstance(val, bool)):
            raise _fail(source, where, f"int {name} must be an integer, got {val!r}", f"write {name} as a whole number")
        if not _is_number(val) or not math.isfinite(val):
            raise _fail(source, where, f"{name} must be a finite number, got {val!r}",
                        f"write {name} as a number such as 1.0e-4 (PyYAML reads 1e-4 as text only without the dot)")
        bounds[name] = val
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    if not low < high:
        raise _fail(source, where, f"empty or inverted range: low ({low!r}) must be < high ({high!r})",
                    "swap low and high, or move the knob to `fixed` if it should not vary")
    if not isinstance(raw.get("log", False), bool):
        raise _fail(source, where, f"log must be true or false, got {raw['log']!r}", "write log: true")
    log = kind == "loguniform" or raw.get("log", False)
    if log and low <= 0:
        raise _fail(source, where, f"log range needs low > 0, got low={low!r}",
                    "raise low above 0 (e.g. 1.0e-6) or use type: uniform")
    if step is not None:
        if step <= 0:
            raise _fail(source, where, f"step must be > 0, got {step!r}", "use a positive step or drop it")
        if log:
            raise _fail(source, where, "Optuna cannot combine log with step", "drop step or log")
        if abs(round((high - low) / step) * step - (high - low)) > 1e-9 * max(1.0, abs(high)):
            raise _fail(source, where, f"high - low ({high - low!r}) is not a multiple of step ({step!r})",
                        f"set high to low + k * step, e.g. {low + step * math.floor((high - low) / step)!r}")
    return ParamSpec(kind, low, high, step, log and kind == "int", ())


def _parse_choice(source: str, where: str, key: str, values: Any, method: str) -> ParamSpec:
    if not isinstance(values, list) or not values:
        raise _fail(source, where, f"choice needs a non-empty list `values`, got {values!r}",
                    f"write {key}: {{type: choice, values: [a, b]}}")
    checked = [_check_value(source, where, key, v, method) for v in values]
    spec = ParamSpec("choice", values=tuple(checked))
    encoded = [json.dumps(spec.encode(v), sort_keys=True) for v in checked]
    if len(set(encoded)) != len(encoded):
        raise _fail(source, where, f"duplicate choice values in {values!r}", "list every value once")
    return spec


# --------------------------------------------------------------------- the space
@dataclass
class SearchSpace:
    """A validated search space.

    One method: ``fixed`` = constants (always holds ``method``), ``params`` =
    knob -> :class:`ParamSpec`. Union: ``fixed`` and ``params`` are keyed by
    method (``fixed["gholm"]["sched"]``), ``members`` holds each method's space.
    ``first`` holds full plain configs (fixed + the paper's values), evaluated
    before anything is sampled; one per method (or more) for unions.
    """

    name: str
    description: str
    fixed: dict[str, Any]
    params: dict[str, Any]
    first: list[dict[str, Any]]
    methods: list[str]
    smoke_overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    members: dict[str, "SearchSpace"] = field(default_factory=dict)

    # ---------------------------------------------------------------- structure
    @property
    def is_union(self) -> bool:
        return bool(self.members)

    @property
    def method(self) -> str:
        if self.is_union:
            raise SpaceError(f"space {self.name!r} searches several methods {self.methods}; use .methods")
        return self.methods[0]

    def member(self, method: str) -> "SearchSpace":
        """The one-method space of ``method`` (self for a one-method space)."""
        if not self.is_union and method == self.method:
            return self
        if method not in self.members:
            raise SpaceError(f"space {self.name!r} has no method {method!r}; its methods are {self.methods}")
        return self.members[method]

    def fixed_value(self, key: str) -> Any:
        """The value ``key`` has in EVERY trial (e.g. ``epochs`` for ASHA's max_t):
        from ``fixed`` or the default; SpaceError when it is searched or differs."""
        values = []
        for m in self.methods:
            sub = self.member(m)
            if key in sub.params:
                raise SpaceError(f"space {self.name!r}: {key!r} is searched for method {m!r}, not fixed")
            values.append(sub.fixed[key] if key in sub.fixed else _method_default(m, key))
        if any(not _same(v, values[0]) for v in values):
            raise SpaceError(f"space {self.name!r}: {key!r} differs across methods: {dict(zip(self.methods, values))}")
        return values[0]

    # ---------------------------------------------------------------- Optuna
    def define_by_run(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run function (``OptunaSearch(space=...)``): suggests the
        knobs, returns the constants. Unions suggest ``method`` first and then only
        that method's knobs, named ``<method>/<key>`` (see the module docstring)."""
        if not self.is_union:
            out = dict(self.fixed)
            for key, spec in self.params.items():
                value = spec.suggest(trial, key)
                if spec.needs_decoding:
                    out[key] = value
            return out
        method = trial.suggest_categorical("method", list(self.methods))
        sub = self.members[method]
        out = dict(sub.fixed)
        for key, spec in sub.params.items():
            value = spec.suggest(trial, f"{method}{SEP}{key}")
            if spec.needs_decoding:
                out[f"{method}{SEP}{key}"] = value
        return out

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """``first`` as OptunaSearch wants it with define-by-run: Optuna param names
        -> values, enqueued with ``study.enqueue_trial`` (constants are left out:
        define_by_run returns them)."""
        points = []
        for cfg in self.first:
            method = cfg["method"]
            sub = self.member(method)
            if self.is_union:
                point = {"method": method}
                point.update({f"{method}{SEP}{k}": s.encode(cfg[k]) for k, s in sub.params.items()})
            else:
                point = {k: s.encode(cfg[k]) for k, s in sub.params.items()}
            points.append(point)
        return points

    def to_trial_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Ray's config -> plain fgmodels config; also checks the method is ours."""
        out = to_trial_config(config)
        method = out.get("method", TRAIN_DEFAULTS["method"])
        if method not in self.methods:
            raise SpaceError(f"config method {method!r} is not in space {self.name!r} (methods {self.methods})")
        return out

    # ---------------------------------------------------------------- overrides
    def apply_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> "SearchSpace":
        """Fix ``overrides`` (key -> value) for every trial: a searched key leaves
        ``params``; ``first`` configs take the value. In a union a key goes to the
        methods that know it, and ``method: x`` (or a list) keeps only those methods."""
        if self.is_union:
            return self._apply_union(dict(overrides), source)
        fixed, params = dict(self.fixed), dict(self.params)
        first = [dict(c) for c in self.first]
        for key, value in overrides.items():
            where = f"override {key}"
            if key == "method":
                if value != self.method:
                    raise _fail(source, where, f"space {self.name!r} is for method {self.method!r}, not {value!r}",
                                f"load a space written for {value!r} (or a union such as 'fgvc')")
                continue
            known = _known_keys(self.method)
            if key not in known:
                raise _fail(source, where, f"unknown config key {key!r} for method {self.method!r}{_closest(key, known)}",
                            "use a key of TRAIN_DEFAULTS (fgmodels/config.py) or of the method's hparams")
            value = _check_value(source, where, key, value, self.method)
            fixed[key] = value
            params.pop(key, None)
            for cfg in first:
                cfg[key] = value
        unique: list[dict[str, Any]] = []
        for cfg in first:
            if not any(_configs_equal(cfg, u) for u in unique):
                unique.append(cfg)
        new = replace(self, fixed=fixed, params=params, first=unique)
        _check_configs(new, source)
        return new

    def _apply_union(self, overrides: dict[str, Any], source: str) -> "SearchSpace":
        members = dict(self.members)
        smoke = dict(self.smoke_overrides)
        if "method" in overrides:
            wanted = overrides.pop("method")
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            for m in wanted:
                if m not in members:
                    raise _fail(source, "override method", f"method {m!r} is not in space {self.name!r}{_closest(m, members)}",
                                f"choose among {self.methods}")
            members = {m: members[m] for m in wanted}
            if len(members) == 1:
                (only,) = members.values()
                keys = set(only.params) | set(only.fixed)
                only = replace(only, smoke_overrides={**only.smoke_overrides, **{k: v for k, v in smoke.items() if k in keys}})
                return only.apply_overrides(overrides, source)
        every_key: set[str] = set().union(*(_known_keys(m) for m in members))
        per_member: dict[str, dict[str, Any]] = {m: {} for m in members}
        for key, value in overrides.items():
            known = [m for m in members if key in _known_keys(m)]
            if not known:
                raise _fail(source, f"override {key}", f"no method of space {self.name!r} knows the key {key!r}"
                            f"{_closest(key, every_key)}", "use a key of TRAIN_DEFAULTS or of one method's hparams")
            for m in known:
                per_member[m][key] = value
        members = {m: sub.apply_overrides(per_member[m], source) for m, sub in members.items()}
        return _make_union(self.name, self.description, list(members.values()), self.source, smoke)

    def smoke(self) -> "SearchSpace":
        """The space with its ``smoke`` section(s) applied: the CPU default on the
        bundled synthetic data (tiny backbone, small batch)."""
        if not self.is_union:
            return self.apply_overrides(self.smoke_overrides, f"{self.source}: smoke")
        members = [sub.smoke() for sub in self.members.values()]
        union = _make_union(self.name, self.description, members, self.source, self.smoke_overrides)
        return union.apply_overrides(self.smoke_overrides, f"{self.source}: smoke") if self.smoke_overrides else union

    # ---------------------------------------------------------------- display
    def describe(self) -> str:
        """Readable table for ``--dry-run``."""
        lines = [f"space {self.name!r} ({self.source})", f"  {self.description}".rstrip()]
        for method in self.methods:
            sub = self.member(method)
            firsts = [c for c in self.first if c["method"] == method]
            lines.append(f"  method {method}: {len(sub.params)} searched, {len(firsts)} first point(s)")
            width = max([len(k) for k in sub.params] + [len(k) for k in sub.fixed] + [6])
            for key, spec in sub.params.items():
                paper = ", ".join(repr(c[key]) for c in firsts)
                lines.append(f"    {key:<{width}}  {spec.describe():<46} first: {paper or '-'}")
            for key, value in sub.fixed.items():
                lines.append(f"    {key:<{width}}  = {value!r}")
            if sub.smoke_overrides:
                lines.append("    smoke: " + ", ".join(f"{k}={v!r}" for k, v in sub.smoke_overrides.items()))
        if self.is_union and self.smoke_overrides:
            lines.append("  smoke (all methods): " + ", ".join(f"{k}={v!r}" for k, v in self.smoke_overrides.items()))
        return "\n".join(lines)


def _configs_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _check_configs(space: SearchSpace, source: str) -> None:
    """Every first config (or the constants alone) must pass resolve_config."""
    for cfg in space.first or [space.fixed]:
        try:
            resolve_config(cfg)
        except ConfigError as err:
            raise _fail(source, "first/fixed", f"the configuration is not runnable: {err}",
                        "change the value named above") from None


def _make_union(name: str, description: str, members: list[SearchSpace], source: str,
                smoke: Mapping[str, Any] | None = None) -> SearchSpace:
    by_method: dict[str, SearchSpace] = {}
    for sub in members:
        for m in sub.methods:
            leaf = sub.member(m)
            if sub.is_union and sub.smoke_overrides:  # a nested union's smoke goes to its methods
                keys = set(leaf.params) | set(leaf.fixed)
                extra = {k: v for k, v in sub.smoke_overrides.items() if k in keys}
                leaf = replace(leaf, smoke_overrides={**leaf.smoke_overrides, **extra})
            if m in by_method:
                raise SpaceError(f"{source}: include: method {m!r} comes from both {by_method[m].source} and "
                                 f"{leaf.source}. Fix: include one space per method")
            by_method[m] = leaf
    return SearchSpace(
        name=name,
        description=description,
        fixed={m: s.fixed for m, s in by_method.items()},
        params={m: s.params for m, s in by_method.items()},
        first=[c for s in by_method.values() for c in s.first],
        methods=list(by_method),
        smoke_overrides=dict(smoke or {}),
        source=source,
        members=by_method,
    )


def to_trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """What Ray hands the trainable -> a plain fgmodels config.

    Lifts the chosen method's knobs (nested ``config[method]`` as Ray delivers
    them, or flat ``"method/key"``) to the top level; rejects another method's
    knobs and a knob given twice with different values."""
    method = config.get("method", TRAIN_DEFAULTS["method"])
    methods = set(_known_methods())
    plain: dict[str, Any] = {}
    scoped: dict[str, Any] = {}
    for key, value in config.items():
        head, sep, rest = key.partition(SEP)
        if sep and (head == method or head in methods):
            owner, sub = head, {rest: value}
        elif isinstance(value, Mapping) and (key == method or key in methods):
            owner, sub = key, dict(value)
        else:
            plain[key] = value
            continue
        if owner != method:
            raise SpaceError(f"trial config holds knobs {sorted(sub)} of method {owner!r} but its method is "
                             f"{method!r}. Fix: pass the config from SearchSpace.define_by_run unchanged")
        scoped.update(sub)
    for key, value in scoped.items():
        if key in plain and not _same(plain[key], value):
            raise SpaceError(f"trial config sets {key!r} twice: {plain[key]!r} and {method}{SEP}{key}={value!r}. "
                             f"Fix: fix the key with apply_overrides instead of adding it to the Tuner's param_space")
    return {**plain, **scoped}


# --------------------------------------------------------------------- loading
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML: {err}. Fix: check the indentation and brackets") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: a space file must be a mapping (description/fixed/params/first/smoke), "
                         f"got {type(data).__name__}. Fix: start from spaces/gholm.yaml")
    return data


def _section(source: str, data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, Mapping):
        raise _fail(source, name, f"must be a mapping of key: value, got {value!r}", f"write `{name}:` then indented `key: value` lines")
    return dict(value)


def _parse_single(data: dict[str, Any], source: str, name: str) -> SearchSpace:
    fixed, raw_params = _section(source, data, "fixed"), _section(source, data, "params")
    smoke = _section(source, data, "smoke")
    if "method" in raw_params:
        raise _fail(source, "params.method", "one space file holds one method",
                    "write one space per method and combine them with `include: [a, b]` or --space a,b")
    method = fixed.setdefault("method", TRAIN_DEFAULTS["method"])
    methods = _known_methods()
    if method not in methods:
        raise _fail(source, "fixed.method", f"unknown method {method!r}{_closest(method, methods)}",
                    f"use one of the registered methods {methods}")
    known = _known_keys(method)
    for section, keys in (("fixed", fixed), ("params", raw_params)):
        for key in keys:
            if key not in known:
                raise _fail(source, f"{section}.{key}", f"unknown config key {key!r} for method {method!r}{_closest(key, known)}",
                            "use a key of TRAIN_DEFAULTS (fgmodels/config.py) or of the method's hparams")
    for key in set(fixed) & set(raw_params):
        raise _fail(source, f"params.{key}", f"{key!r} is both fixed and searched", "remove it from `fixed` or from `params`")
    fixed = {k: (v if k == "method" else _check_value(source, f"fixed.{k}", k, v, method)) for k, v in fixed.items()}
    params = {k: _parse_param(source, k, v, method) for k, v in raw_params.items()}
    first = [{**fixed, **point} for point in _parse_first(source, data.get("first"), params, fixed, method)]
    for key, value in smoke.items():
        if key not in params and key not in fixed:
            raise _fail(source, f"smoke.{key}", f"{key!r} is not in this space's params or fixed{_closest(key, set(params) | set(fixed))}",
                        f"add {key} to `fixed` (its full-run value) or remove it from `smoke`")
    space = SearchSpace(name=name, description=str(data.get("description", "")), fixed=fixed, params=params,
                        first=first, methods=[method], smoke_overrides=smoke, source=source)
    _check_configs(space, source)
    space.smoke()  # validates the smoke values
    return space


def _parse_first(source: str, raw: Any, params: dict[str, ParamSpec], fixed: dict[str, Any],
                 method: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    points = raw if isinstance(raw, list) else [raw]
    out = []
    for i, point in enumerate(points):
        tag = "first" if isinstance(raw, Mapping) else f"first[{i}]"
        if not isinstance(point, Mapping):
            raise _fail(source, tag, f"must be a mapping of param: value, got {point!r}", "write `first:` then `key: value` lines")
        point = dict(point)
        for key in point:
            if key not in params:
                fix = f"remove {key} from first (it is fixed)" if key in fixed else f"remove it or add it to params{_closest(key, params)}"
                raise _fail(source, f"{tag}.{key}", f"{key!r} is not a searched param", fix)
        for key, spec in params.items():
            if key not in point:
                raise _fail(source, f"{tag}.{key}", f"no value for param {key!r}", f"add {key}: <the paper's value> to {tag}")
            value = point[key]
            if isinstance(value, str):
                value = _check_value(source, f"{tag}.{key}", key, value, method)
            if not spec.contains(value):
                raise _fail(source, f"{tag}.{key}", f"value {value!r} is outside the param's range ({spec.describe()})",
                            f"change {tag}.{key} or widen params.{key}")
            point[key] = value
        out.append(point)
    return out


def _resolve_ref(ref: Any, spaces_dir: Path, where: str, base_dir: Path | None = None) -> Path:
    """A space name (``gholm`` -> spaces/gholm.yaml) or a path to a YAML file."""
    if not isinstance(ref, str) or not ref.strip():
        raise SpaceError(f"{where}: a space must be a name or a path, got {ref!r}. Fix: e.g. gholm or my_space.yaml")
    ref = ref.strip()
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") or "/" in ref or os.sep in ref:
        candidates = [path] if path.is_absolute() or base_dir is None else [base_dir / path, path]
    else:
        candidates = ([base_dir / f"{ref}.yaml"] if base_dir else []) + [spaces_dir / f"{ref}.yaml", spaces_dir / f"{ref}.yml"]
    candidates = list(dict.fromkeys(candidates))
    for cand in candidates:
        if cand.is_file():
            return cand
    available = sorted(p.stem for p in Path(spaces_dir).glob("*.y*ml"))
    raise SpaceError(f"{where}: space {ref!r} not found (looked at {[str(c) for c in candidates]}){_closest(ref, available)}. "
                     f"Fix: use one of {available} or the path of a YAML space file")


def _load_file(path: Path, spaces_dir: Path, stack: tuple[Path, ...] = ()) -> SearchSpace:
    path = path.resolve()
    source = str(path)
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise SpaceError(f"{source}: include: circular include {chain}. Fix: remove one of the includes")
    data = _read_yaml(path)
    for key in data:
        if key not in _SECTIONS:
            raise _fail(source, key, f"unknown section {key!r}{_closest(key, _SECTIONS)}", f"use only {list(_SECTIONS)}")
    if "include" not in data:
        return _parse_single(data, source, path.stem)
    for key in data:
        if key not in _UNION_SECTIONS:
            raise _fail(source, key, f"a file with `include` cannot have `{key}`",
                        f"put {key} in the included method spaces; a union file takes {list(_UNION_SECTIONS)}")
    refs = data["include"]
    if not isinstance(refs, list) or not refs:
        raise _fail(source, "include", f"must be a non-empty list of space names, got {refs!r}", "write include: [baseline, gholm]")
    members = [_load_file(_resolve_ref(r, spaces_dir, f"{source}: include", path.parent), spaces_dir, (*stack, path)) for r in refs]
    union = _make_union(path.stem, str(data.get("description", "")), members, source)
    fixed = _section(source, data, "fixed")
    if fixed:
        union = union.apply_overrides(fixed, f"{source}: fixed")
    smoke = _section(source, data, "smoke")
    for key in smoke:
        if not any(key in sub.params or key in sub.fixed for sub in union.members.values()):
            raise _fail(source, f"smoke.{key}", f"{key!r} is in no included space's params or fixed",
                        f"remove {key} from smoke or add it to a method's space")
    union.smoke_overrides = smoke
    union.smoke()  # validates the smoke values
    return union


def load_space(spec: str, spaces_dir: Path | str = SPACES_DIR) -> SearchSpace:
    """``spec``: a name in ``spaces_dir`` (``gholm``), a path to a YAML file, or
    ``"A,B"``: the union of several spaces (the method becomes a choice)."""
    spaces_dir = Path(spaces_dir)
    refs = [r.strip() for r in str(spec).split(",")]
    if any(not r for r in refs):
        raise SpaceError(f"--space {spec!r}: empty name in the list. Fix: write names separated by commas, e.g. baseline,gholm")
    spaces = [_load_file(_resolve_ref(r, spaces_dir, f"--space {spec!r}"), spaces_dir) for r in refs]
    if len(spaces) == 1:
        return spaces[0]
    names = "+".join(s.name for s in spaces)
    return _make_union(names, "union of " + ", ".join(s.name for s in spaces), spaces, f"--space {spec}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """CLI ``--set key=value`` items -> dict; values are read as YAML (numbers,
    true/false, lists), so ``lr=1e-3`` becomes the float 0.001."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpaceError(f"--set {item!r}: expected key=value. Fix: e.g. --set epochs=2")
        value = yaml.safe_load(text) if text.strip() else None
        out[key.strip()] = _float_string(value) if _float_string(value) is not None else value
    return out


# --------------------------------------------------------------------- sampling
def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Ray's unflatten_dict on ``/`` (kept here so this module never imports ray)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(SEP)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def sample_configs(space: SearchSpace, n: int, seed: int = 0, sampler: str = "random",
                   include_first: bool = False) -> list[dict[str, Any]]:
    """``n`` plain configs drawn through ``define_by_run`` + ``to_trial_config``
    exactly as a Ray trial would get them (in-memory study, no Ray). With
    ``include_first`` the first configs come first (they count toward ``n``)."""
    import optuna

    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    if sampler not in samplers:
        raise SpaceError(f"sampler {sampler!r} unknown. Fix: use one of {sorted(samplers)}")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=samplers[sampler](seed=seed))
        if include_first:
            for point in space.points_to_evaluate():
                study.enqueue_trial(point)
        configs = []
        for _ in range(n):
            trial = study.ask()
            returned = space.define_by_run(trial)
            configs.append(space.to_trial_config(_nest({**trial.params, **returned})))
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return configs
