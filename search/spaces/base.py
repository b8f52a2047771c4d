"""What every search space offers the driver, whether it searches one method
(:class:`~search.spaces.method.MethodSpace`) or several
(:class:`~search.spaces.union.UnionSpace`)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from search.spaces.checks import SpaceError, default_of, same
from search.spaces.names import OptunaNames

if TYPE_CHECKING:
    from search.spaces.method import MethodSpace


class SearchSpace(ABC):
    """A validated search space. ``first`` holds full plain configs (constants
    + the paper's values), evaluated before anything is sampled."""

    name: str
    description: str
    source: str
    smoke_overrides: dict[str, Any]
    # each kind of space provides these (as fields or properties):
    methods: list[str]  # the methods it searches, in order
    is_union: bool
    first: list[dict[str, Any]]
    names: OptunaNames  # config key <-> Optuna parameter name

    # ---------------------------------------------------------------- structure
    @abstractmethod
    def member(self, method: str) -> "MethodSpace":
        """The one-method space of ``method``."""

    @property
    def method(self) -> str:
        if self.is_union:
            raise SpaceError(f"space {self.name!r} searches several methods {self.methods}; use .methods")
        return self.methods[0]

    def fixed_value(self, key: str) -> Any:
        """The value ``key`` has in EVERY trial (e.g. ``epochs``, the scheduler's
        horizon): from ``fixed`` or the default; SpaceError when it is searched or differs."""
        values = []
        for m in self.methods:
            sub = self.member(m)
            if key in sub.params:
                raise SpaceError(f"space {self.name!r}: {key!r} is searched for method {m!r}, not fixed")
            values.append(sub.fixed[key] if key in sub.fixed else default_of(m, key))
        if any(not same(v, values[0]) for v in values):
            raise SpaceError(f"space {self.name!r}: {key!r} differs across methods: {dict(zip(self.methods, values))}")
        return values[0]

    # ---------------------------------------------------------------- Optuna
    @abstractmethod
    def define_by_run(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run function (``OptunaSearch(space=...)``): suggests
        the knobs, returns the constants."""

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """``first`` as OptunaSearch takes it with define-by-run: Optuna names ->
        values, enqueued in this order (constants are left out: define_by_run
        returns them)."""
        return [self.names.point(cfg, self.member(cfg["method"])) for cfg in self.first]

    def to_trial_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's config as Ray hands it -> plain fgmodels config of one of this space's methods."""
        out = self.names.decode(config)
        method = out.get("method")
        if method not in self.methods:
            raise SpaceError(f"config method {method!r} is not in space {self.name!r} (methods {self.methods})")
        return out

    # ---------------------------------------------------------------- overrides
    @abstractmethod
    def apply_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> "SearchSpace":
        """Fix ``overrides`` (key -> value) for every trial."""

    @abstractmethod
    def smoke(self) -> "SearchSpace":
        """The space with its ``smoke`` section(s) applied: the CPU default on
        the bundled synthetic data (tiny backbone, small batch)."""

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
            if sub.mutable:
                lines.append("    mutable (PBT): " + ", ".join(sub.mutable))
            if sub.smoke_overrides:
                lines.append("    smoke: " + ", ".join(f"{k}={v!r}" for k, v in sub.smoke_overrides.items()))
        if self.is_union and self.smoke_overrides:
            lines.append("  smoke (all methods): " + ", ".join(f"{k}={v!r}" for k, v in self.smoke_overrides.items()))
        return "\n".join(lines)
