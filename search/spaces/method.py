"""The space of one method: constants, searched knobs, the paper's point(s)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from search.spaces.base import SearchSpace
from search.spaces.checks import SpaceError, checked, closest, configs_equal, fail, known_keys
from search.spaces.names import OptunaNames
from search.spaces.paper import Paper
from search.spaces.params import ParamSpec, check_param

_NAMES = OptunaNames(scoped=False)


@dataclass
class MethodSpace(SearchSpace):
    """``fixed``: constants (always holds ``method``); ``params``: knob ->
    :class:`ParamSpec`; ``first``: full plain configs tried before sampling."""

    name: str
    description: str
    fixed: dict[str, Any]
    params: dict[str, ParamSpec]
    first: list[dict[str, Any]]
    smoke_overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    mutable: tuple[str, ...] = ()  # searched continuous knobs PBT may change during a trial
    paper: Paper | None = None  # what the paper reports per dataset (the `paper:` section)

    @property
    def methods(self) -> list[str]:
        return [self.fixed["method"]]

    @property
    def is_union(self) -> bool:
        return False

    @property
    def names(self) -> OptunaNames:
        return _NAMES

    def member(self, method: str) -> "MethodSpace":
        if method != self.method:
            raise SpaceError(f"space {self.name!r} has no method {method!r}; its methods are {self.methods}")
        return self

    def define_by_run(self, trial: Any) -> dict[str, Any]:
        return self.names.suggest(trial, self)

    def check(self, source: str) -> None:
        """Every first config (or the constants alone) is a whole valid config."""
        for i, cfg in enumerate(self.first or [self.fixed]):
            where = f"first[{i}]" if self.first else "fixed"
            checked(source, where, self.method, cfg)

    def apply_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> "MethodSpace":
        """Fix ``overrides`` for every trial: a searched key leaves ``params``,
        ``first`` configs take the value, and every remaining choice and range
        bound is checked again beside the new constants."""
        fixed, params = dict(self.fixed), dict(self.params)
        for key, value in overrides.items():
            if key == "method":
                if value != self.method:
                    raise fail(source, "override.method", f"space {self.name!r} is for method {self.method!r}, not {value!r}",
                               f"load a space written for {value!r} (or a union such as 'fgvc')")
                continue
            known = known_keys(self.method)
            if key not in known:
                raise fail(source, f"override.{key}", f"unknown config key {key!r} for method {self.method!r}"
                           f"{closest(key, known)}", "use a key of TRAIN_DEFAULTS (fgmodels/config.py) or of the method's hparams")
        given = checked(source, "override", self.method, {k: v for k, v in overrides.items() if k != "method"}, fixed)
        fixed.update(given)
        for key in given:
            params.pop(key, None)
        for key, spec in params.items():
            check_param(source, key, spec, self.method, fixed)
        unique: list[dict[str, Any]] = []
        for cfg in ({**c, **given} for c in self.first):
            if not any(configs_equal(cfg, u) for u in unique):
                unique.append(cfg)
        new = replace(self, fixed=fixed, params=params, first=unique, mutable=tuple(k for k in self.mutable if k in params))
        new.check(source)
        return new

    def smoke(self) -> "MethodSpace":
        return self.apply_overrides(self.smoke_overrides, f"{self.source}: smoke")
