"""Typed declarations of configuration keys ("knobs") and the one check of a value.

A knob is declared once, with its default. Its kind (integer, number, true/false,
string, list) follows from the default, so the declaration is the whole truth
about what a key accepts: bounds, choices and an extra rule sit beside the
default. The training keys (:mod:`fgmodels.config`) and every method's own knobs
(a :class:`KnobSet` next to the method) use the same type and :meth:`Knob.check`,
so a bad value fails with the same message whether it comes from YAML, ``--set``,
a search space or a direct constructor call, and it fails before any work starts.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, TypeVar

_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_KIND_WORDS: dict[type, str] = {
    bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
}


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key and ends with a fix.

    ``key`` is the offending config key when there is one (callers that report
    where a value came from, such as the search-space loader, use it)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _kind_of(default: Any) -> type:
    # bool before int: True is an int in Python
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    if isinstance(default, (list, tuple)):
        return list
    raise TypeError(f"a knob default must be a bool, int, float, str, list or None, got {default!r}")


_BAD = object()


def _coerce(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` where the conversion loses nothing, else ``_BAD``."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars from samplers: np.float64, np.int64, np.bool_
    if kind is bool:
        return value if isinstance(value, bool) else _BAD
    if isinstance(value, bool):  # never a number
        return _BAD
    if kind is int:
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            return int(value)  # 16.0 from a float-typed source means 16
        return _BAD
    if kind is float:
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
            return float(value)  # YAML reads 1e-4 (no dot) as a string
        return _BAD
    if kind is str:
        return value if isinstance(value, str) else _BAD
    if kind is list:
        return list(value) if isinstance(value, (list, tuple)) else _BAD
    return _BAD


def _fmt(x: Any) -> str:
    return repr(x) if isinstance(x, str) else f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Knob:
    """One configuration key: its default and everything a value must satisfy.

    ``kind`` is inferred from ``default`` (give it when the default is None);
    ``nullable`` is implied by a None default. ``rule`` is an extra check for
    what bounds and choices cannot say (a timm model name, a stage list): it
    returns what is wrong with the value ("is not a timm model"), or None.
    ``hint`` is added to the fix of a kind, range or choice error, and is the
    fix of a rule error.
    """

    default: Any
    doc: str = ""
    kind: type | None = None
    nullable: bool = False
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    rule: Callable[[Any], str | None] | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        if self.default is None:
            if self.kind is None:
                raise TypeError("a knob whose default is None needs an explicit kind=")
            object.__setattr__(self, "nullable", True)
        elif self.kind is None:
            object.__setattr__(self, "kind", _kind_of(self.default))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    # ------------------------------------------------------------- description
    @property
    def bounded(self) -> bool:
        return any(b is not None for b in (self.gt, self.ge, self.lt, self.le))

    @property
    def range_text(self) -> str:
        """The bounds in words: ``> 0``, ``>= 1``, ``in (0, 1)``, ``in [0, 1]``; '' if none."""
        low = (self.gt, "(") if self.gt is not None else (self.ge, "[") if self.ge is not None else None
        high = (self.lt, ")") if self.lt is not None else (self.le, "]") if self.le is not None else None
        if low and high:
            return f"in {low[1]}{_fmt(low[0])}, {_fmt(high[0])}{high[1]}"
        if low:
            return f"{'>' if low[1] == '(' else '>='} {_fmt(low[0])}"
        if high:
            return f"{'<' if high[1] == ')' else '<='} {_fmt(high[0])}"
        return ""

    @property
    def requirement(self) -> str:
        """What a valid value is, in words: ``a number > 0``, ``one of ['sum', 'fused']``."""
        if self.choices is not None:
            text = f"one of {list(self.choices)}"
        else:
            text = _KIND_WORDS[self.kind]  # type: ignore[index]
            if self.range_text:
                text += f" {self.range_text}"
        return f"{text} or null" if self.nullable else text

    # ------------------------------------------------------------------- check
    def check(self, value: Any, name: str, owner: str = "config key") -> Any:
        """``value`` coerced to this knob's kind, or a ConfigError naming ``owner`` and ``name``.

        Harmless coercions only: an int for a number, a numeric string such as
        ``"1e-4"`` for a number, an integral float for an integer, a tuple for a list.
        """
        if value is None:
            if self.nullable:
                return None
            raise self._error(name, owner, f"must be {self.requirement}", value)
        got = _coerce(self.kind, value)  # type: ignore[arg-type]
        if got is _BAD:
            raise self._error(name, owner, f"must be {_KIND_WORDS[self.kind]}", value)  # type: ignore[index]
        if self.choices is not None and got not in self.choices:
            raise self._error(name, owner, f"must be one of {list(self.choices)}", value)
        if self.bounded and not self._in_range(got):
            raise self._error(name, owner, f"must be {self.range_text}", value)
        if self.rule is not None:
            problem = self.rule(got)
            if problem:
                fix = self.hint or f"change {name} (default {self.default!r})"
                raise ConfigError(f"{owner} {name!r}: {value!r} {problem}. Fix: {fix}.", key=name)
        return got

    def _in_range(self, v: float) -> bool:
        # written as "not (v > gt)" so that NaN fails every bound
        return not (
            (self.gt is not None and not v > self.gt) or (self.ge is not None and not v >= self.ge)
            or (self.lt is not None and not v < self.lt) or (self.le is not None and not v <= self.le)
        )

    def _error(self, name: str, owner: str, problem: str, value: Any) -> ConfigError:
        fix = f"set {name} to {self.requirement} (default {self.default!r})"
        if self.hint:
            fix += f"; {self.hint}"
        return ConfigError(f"{owner} {name!r} {problem}, got {value!r}. Fix: {fix}.", key=name)


def knob(default: Any, doc: str = "", **spec: Any) -> Any:
    """A :class:`KnobSet` field: ``mu: float = knob(1.7, gt=0, doc="...")``."""
    meta = {"knob": Knob(default, doc, **spec)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Broken(NamedTuple):
    """A cross-knob rule that does not hold: the keys involved, what is wrong, the fix."""

    keys: tuple[str, ...]
    problem: str
    fix: str


K = TypeVar("K", bound="KnobSet")


@dataclass
class KnobSet:
    """Base of a method's knob declaration: a dataclass whose fields are :func:`knob` s.

    The fields are the method's config keys and their defaults (its ``hparams``).
    Rules that tie several knobs together go in :meth:`broken_rules`. An instance
    holds checked values; a method reads its settings from it (``self.hp.mu``).
    """

    _declared_cache: ClassVar[dict[type, dict[str, Knob]]] = {}

    @classmethod
    def declared(cls) -> dict[str, Knob]:
        """Knob name -> declaration, in declaration order."""
        if cls not in KnobSet._declared_cache:
            if "__dataclass_fields__" not in cls.__dict__:
                raise TypeError(f"{cls.__qualname__} must be decorated with @dataclass to declare knobs")
            out = {}
            for f in dataclasses.fields(cls):
                if "knob" not in f.metadata:
                    raise TypeError(f"{cls.__qualname__}.{f.name} must be declared with knob(default, ...)")
                out[f.name] = f.metadata["knob"]
            KnobSet._declared_cache[cls] = out
        return dict(KnobSet._declared_cache[cls])

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {name: (list(k.default) if isinstance(k.default, list) else k.default)
                for name, k in cls.declared().items()}

    @classmethod
    def check_each(cls, values: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """Every given value checked against its own declaration (no cross-knob rules)."""
        declared = cls.declared()
        out = {}
        for name, value in values.items():
            if name not in declared:
                raise ConfigError(
                    f"{owner} has no knob {name!r}. Fix: use one of {sorted(declared)}.", key=name
                )
            out[name] = declared[name].check(value, name, f"{owner} knob")
        return out

    @classmethod
    def build(cls: type[K], values: Mapping[str, Any], owner: str) -> K:
        """Defaults overridden by the checked ``values``, cross-knob rules enforced."""
        knobs = cls(**cls.check_each(values, owner))
        knobs.check_rules(owner)
        return knobs

    def check_rules(self, owner: str) -> None:
        for broken in self.broken_rules():
            names = ", ".join(repr(k) for k in broken.keys)
            raise ConfigError(f"{owner} knobs {names}: {broken.problem}. Fix: {broken.fix}.", key=broken.keys[0])

    def broken_rules(self) -> Iterable[Broken]:
        """Override: yield a :class:`Broken` for every cross-knob rule that fails."""
        return ()

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.declared()}
