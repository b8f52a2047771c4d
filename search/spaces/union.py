"""A union of one-method spaces: the method becomes a choice, each method keeps
its own knobs, constants and first point(s)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from search.spaces.base import SearchSpace
from search.spaces.checks import SpaceError, closest, fail, known_keys
from search.spaces.method import MethodSpace
from search.spaces.names import METHOD, OptunaNames

_NAMES = OptunaNames(scoped=True)


@dataclass
class UnionSpace(SearchSpace):
    """``members``: method -> its :class:`MethodSpace`; ``smoke_overrides``:
    the union file's own smoke section (applied to the methods that know each key)."""

    name: str
    description: str
    members: dict[str, MethodSpace]
    smoke_overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def methods(self) -> list[str]:
        return list(self.members)

    @property
    def is_union(self) -> bool:
        return True

    @property
    def names(self) -> OptunaNames:
        return _NAMES

    @property
    def first(self) -> list[dict[str, Any]]:
        return [c for sub in self.members.values() for c in sub.first]

    def member(self, method: str) -> MethodSpace:
        if method not in self.members:
            raise SpaceError(f"space {self.name!r} has no method {method!r}; its methods are {self.methods}")
        return self.members[method]

    def define_by_run(self, trial: Any) -> dict[str, Any]:
        """Suggests the method first, then only that method's knobs."""
        method = trial.suggest_categorical(METHOD, self.methods)
        return self.names.suggest(trial, self.members[method])

    def apply_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> SearchSpace:
        """A key goes to the methods that know it; ``method: x`` (or a list)
        keeps only those methods (one left: its one-method space)."""
        overrides = dict(overrides)
        members, smoke = dict(self.members), dict(self.smoke_overrides)
        if "method" in overrides:
            wanted = overrides.pop("method")
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            for m in wanted:
                if m not in members:
                    raise fail(source, "override.method", f"method {m!r} is not in space {self.name!r}{closest(m, members)}",
                               f"choose among {self.methods}")
            members = {m: members[m] for m in wanted}
            if len(members) == 1:
                (only,) = members.values()
                only = replace(only, smoke_overrides={**only.smoke_overrides, **_known_to(only, smoke)})
                return only.apply_overrides(overrides, source)
        every_key: set[str] = set().union(*(known_keys(m) for m in members))
        for key in overrides:
            if not any(key in known_keys(m) for m in members):
                raise fail(source, f"override.{key}", f"no method of space {self.name!r} knows the key {key!r}"
                           f"{closest(key, every_key)}", "use a key of TRAIN_DEFAULTS or of one method's hparams")
        members = {m: sub.apply_overrides({k: v for k, v in overrides.items() if k in known_keys(m)}, source)
                   for m, sub in members.items()}
        return make_union(self.name, self.description, list(members.values()), self.source, smoke)

    def smoke(self) -> SearchSpace:
        union = make_union(self.name, self.description, [sub.smoke() for sub in self.members.values()],
                           self.source, self.smoke_overrides)
        return union.apply_overrides(self.smoke_overrides, f"{self.source}: smoke") if self.smoke_overrides else union


def _known_to(space: MethodSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``space`` searches or fixes."""
    keys = set(space.params) | set(space.fixed)
    return {k: v for k, v in values.items() if k in keys}


def make_union(name: str, description: str, parts: list[SearchSpace], source: str,
               smoke: Mapping[str, Any] | None = None) -> UnionSpace:
    """One union of the methods of ``parts`` (spaces or unions); a method may come from one part only."""
    by_method: dict[str, MethodSpace] = {}
    for part in parts:
        for m in part.methods:
            leaf = part.member(m)
            if part.is_union and part.smoke_overrides:  # a nested union's smoke goes to its methods
                leaf = replace(leaf, smoke_overrides={**leaf.smoke_overrides, **_known_to(leaf, part.smoke_overrides)})
            if m in by_method:
                raise SpaceError(f"{source}: include: method {m!r} comes from both {by_method[m].source} and "
                                 f"{leaf.source}. Fix: include one space per method")
            by_method[m] = leaf
    return UnionSpace(name=name, description=description, members=by_method, smoke_overrides=dict(smoke or {}),
                      source=source)
