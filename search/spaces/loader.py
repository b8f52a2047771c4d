"""Reading space files: ``spaces/<name>.yaml`` -> a validated space.

A method's file has the sections ``description``, ``fixed`` (constants, always
``method``), ``params`` (the searched knobs), ``first`` (the paper's point or a
list of points, evaluated before anything is sampled) and ``smoke`` (the CPU
settings for the bundled synthetic data) and ``mutable`` (the searched
continuous knobs that ``--scheduler pbt`` may change during a trial) and ``paper`` (the paper's accuracy
per dataset and the point that reproduces it, :mod:`search.spaces.paper`). A union file has ``include`` (a list of
space names or paths, or ``all``: every registered method with a space file),
plus ``description``, ``fixed`` and ``smoke`` applied to the methods that know each
key. Everything is checked on load, before any trial runs: a typo must cost a
second, not a night of GPU time. Every :class:`SpaceError` names the file, the
key and a fix.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fgmodels.config import TRAIN_DEFAULTS
from search.spaces.base import SearchSpace
from search.spaces.checks import SpaceError, checked, closest, fail, float_text, known_keys, known_methods
from search.spaces.method import MethodSpace
from search.spaces.paper import parse_paper
from search.spaces.params import ParamSpec, parse_param
from search.spaces.union import make_union

SPACES_DIR = Path(__file__).resolve().parent.parent.parent / "spaces"
_SECTIONS = ("description", "fixed", "params", "first", "smoke", "mutable", "paper", "include")
_UNION_SECTIONS = ("description", "include", "fixed", "smoke")
INCLUDE_ALL = "all"


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
    return make_union("+".join(s.name for s in spaces), "union of " + ", ".join(s.name for s in spaces), spaces,
                      f"--space {spec}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """CLI ``--set key=value`` items -> dict; values are read as YAML (numbers,
    true/false, lists), so ``lr=1e-3`` becomes the float 0.001."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpaceError(f"--set {item!r}: expected key=value. Fix: e.g. --set epochs=2")
        value = yaml.safe_load(text) if text.strip() else None
        out[key.strip()] = float_text(value) if float_text(value) is not None else value
    return out


# ------------------------------------------------------------------ files
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
        raise fail(source, name, f"must be a mapping of key: value, got {value!r}", f"write `{name}:` then indented `key: value` lines")
    return dict(value)


def _candidates(ref: str, spaces_dir: Path, base_dir: Path | None) -> list[Path]:
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") or "/" in ref or os.sep in ref:
        found = [path] if path.is_absolute() or base_dir is None else [base_dir / path, path]
    else:
        found = ([base_dir / f"{ref}.yaml"] if base_dir else []) + [spaces_dir / f"{ref}.yaml", spaces_dir / f"{ref}.yml"]
    return list(dict.fromkeys(found))


def _resolve_ref(ref: Any, spaces_dir: Path, where: str, base_dir: Path | None = None) -> Path:
    """A space name (``gholm`` -> spaces/gholm.yaml) or a path to a YAML file."""
    if not isinstance(ref, str) or not ref.strip():
        raise SpaceError(f"{where}: a space must be a name or a path, got {ref!r}. Fix: e.g. gholm or my_space.yaml")
    candidates = _candidates(ref.strip(), spaces_dir, base_dir)
    for cand in candidates:
        if cand.is_file():
            return cand
    available = sorted(p.stem for p in Path(spaces_dir).glob("*.y*ml"))
    raise SpaceError(f"{where}: space {ref!r} not found (looked at {[str(c) for c in candidates]}){closest(ref, available)}. "
                     f"Fix: use one of {available} or the path of a YAML space file")


def _every_method_space(spaces_dir: Path, base_dir: Path) -> list[Path]:
    """``include: all``: the space file of every registered method that has one
    (next to the union file, else in ``spaces_dir``), in registry order."""
    found = []
    for method in known_methods():
        path = next((p for p in _candidates(method, spaces_dir, base_dir) if p.is_file()), None)
        if path is not None:
            found.append(path)
    return found


def _load_file(path: Path, spaces_dir: Path, stack: tuple[Path, ...] = ()) -> SearchSpace:
    path = path.resolve()
    source = str(path)
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise SpaceError(f"{source}: include: circular include {chain}. Fix: remove one of the includes")
    data = _read_yaml(path)
    for key in data:
        if key not in _SECTIONS:
            raise fail(source, key, f"unknown section {key!r}{closest(key, _SECTIONS)}", f"use only {list(_SECTIONS)}")
    if "include" not in data:
        return _parse_method_space(data, source, path.stem)
    return _parse_union(data, source, path, spaces_dir, stack)


def _parse_union(data: dict[str, Any], source: str, path: Path, spaces_dir: Path, stack: tuple[Path, ...]) -> SearchSpace:
    for key in data:
        if key not in _UNION_SECTIONS:
            raise fail(source, key, f"a file with `include` cannot have `{key}`",
                       f"put {key} in the included method spaces; a union file takes {list(_UNION_SECTIONS)}")
    refs = data["include"]
    if refs == INCLUDE_ALL:
        files = [p for p in _every_method_space(spaces_dir, path.parent) if p.resolve() != path]
        if not files:
            raise fail(source, "include", f"no registered method {known_methods()} has a space file",
                       f"write spaces/<method>.yaml for at least one method")
    elif isinstance(refs, list) and refs:
        files = [_resolve_ref(r, spaces_dir, f"{source}: include", path.parent) for r in refs]
    else:
        raise fail(source, "include", f"must be `all` or a non-empty list of space names, got {refs!r}",
                   "write include: all, or include: [baseline, gholm]")
    members = [_load_file(p, spaces_dir, (*stack, path)) for p in files]
    union: SearchSpace = make_union(path.stem, str(data.get("description", "")), members, source)
    fixed = _section(source, data, "fixed")
    if fixed:
        union = union.apply_overrides(fixed, f"{source}: fixed")
    smoke = _section(source, data, "smoke")
    for key in smoke:
        if not any(key in union.member(m).params or key in union.member(m).fixed for m in union.methods):
            raise fail(source, f"smoke.{key}", f"{key!r} is in no included space's params or fixed",
                       f"remove {key} from smoke or add it to a method's space")
    union.smoke_overrides = smoke
    union.smoke()  # checks the smoke values
    return union


def _parse_method_space(data: dict[str, Any], source: str, name: str) -> MethodSpace:
    fixed, raw_params = _section(source, data, "fixed"), _section(source, data, "params")
    smoke = _section(source, data, "smoke")
    if "method" in raw_params:
        raise fail(source, "params.method", "one space file holds one method",
                   "write one space per method and combine them with `include: [a, b]` or --space a,b")
    method = fixed.setdefault("method", TRAIN_DEFAULTS["method"])
    methods = known_methods()
    if method not in methods:
        raise fail(source, "fixed.method", f"unknown method {method!r}{closest(method, methods)}",
                   f"use one of the registered methods {methods}")
    known = known_keys(method)
    for section, keys in (("fixed", fixed), ("params", raw_params)):
        for key in keys:
            if key not in known:
                raise fail(source, f"{section}.{key}", f"unknown config key {key!r} for method {method!r}{closest(key, known)}",
                           "use a key of TRAIN_DEFAULTS (fgmodels/config.py) or of the method's hparams")
    for key in set(fixed) & set(raw_params):
        raise fail(source, f"params.{key}", f"{key!r} is both fixed and searched", "remove it from `fixed` or from `params`")
    fixed = checked(source, "fixed", method, fixed)
    params = {k: parse_param(source, k, v, method, fixed) for k, v in raw_params.items()}
    first = [{**fixed, **point} for point in _parse_first(source, data.get("first"), params, fixed, method)]
    for key in smoke:
        if key not in params and key not in fixed:
            raise fail(source, f"smoke.{key}", f"{key!r} is not in this space's params or fixed{closest(key, set(params) | set(fixed))}",
                       f"add {key} to `fixed` (its full-run value) or remove it from `smoke`")
    space = MethodSpace(name=name, description=str(data.get("description", "")), fixed=fixed, params=params,
                        first=first, smoke_overrides=smoke, source=source,
                        mutable=_parse_mutable(source, data.get("mutable"), params),
                        paper=parse_paper(source, data.get("paper"), fixed, first, method))
    space.check(source)
    space.smoke()  # checks the smoke values
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
            raise fail(source, tag, f"must be a mapping of param: value, got {point!r}", "write `first:` then `key: value` lines")
        for key in point:
            if key not in params:
                fix = f"remove {key} from first (it is fixed)" if key in fixed else f"remove it or add it to params{closest(key, params)}"
                raise fail(source, f"{tag}.{key}", f"{key!r} is not a searched param", fix)
        for key in params:
            if key not in point:
                raise fail(source, f"{tag}.{key}", f"no value for param {key!r}", f"add {key}: <the paper's value> to {tag}")
        point = checked(source, tag, method, dict(point), fixed)
        for key, spec in params.items():
            if not spec.contains(point[key]):
                raise fail(source, f"{tag}.{key}", f"value {point[key]!r} is outside the param's range ({spec.describe()})",
                           f"change {tag}.{key} or widen params.{key}")
        out.append(point)
    return out


def _parse_mutable(source: str, raw: Any, params: dict[str, ParamSpec]) -> tuple[str, ...]:
    """``mutable: [lr, weight_decay]``: knobs PBT perturbs within their range,
    so each must be a searched uniform or loguniform knob."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        raise fail(source, "mutable", f"must be a list of searched knob names, got {raw!r}", "write mutable: [lr, weight_decay]")
    for key in raw:
        if key not in params:
            raise fail(source, f"mutable.{key}", f"{key!r} is not a searched param{closest(key, params)}",
                       f"add {key} to params or remove it from mutable")
        if params[key].type not in ("uniform", "loguniform"):
            raise fail(source, f"mutable.{key}", f"{key!r} is a {params[key].type} knob; PBT perturbs only continuous "
                       f"ones (uniform, loguniform)", f"remove {key} from mutable")
    if len(set(raw)) != len(raw):
        raise fail(source, "mutable", f"a knob is listed twice in {raw!r}", "list each knob once")
    return tuple(raw)
