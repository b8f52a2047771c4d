"""The Optuna bridge: config keys <-> Optuna parameter names, both ways.

A one-method space names each knob by its config key (``lr``, ``mu``). A union
names the method choice ``method`` and every other knob ``<method>:<key>``
(``gholm:mu``): a separate TPE history per method (a good lr for one method says
nothing about another), and a knob may offer different choices per method
(Optuna refuses a categorical whose choices change under one name).

Ray's ``OptunaSearch`` hands a trial ``{**suggested, **returned}`` (the suggested
values under their Optuna names, overlaid with what the define-by-run function
returns) after splitting every name on ``/`` into nested dicts. ``:`` is not
split, so a trial's config arrives flat and :meth:`OptunaNames.decode` alone
turns it into a plain fgmodels config; no step relies on Ray's splitting.

Choice values Optuna cannot store (lists) are suggested as JSON text; the
define-by-run function also returns the decoded value under the same name, so
it overrides the text and the trial's config always carries the real value.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fgmodels.config import TRAIN_DEFAULTS
from search.spaces.checks import SpaceError, same

if TYPE_CHECKING:
    from search.spaces.method import MethodSpace

SEP = ":"  # <method>:<key>; Ray nests names on "/", never on ":"
METHOD = "method"  # the Optuna name (and config key) of the method choice in a union


class OptunaNames:
    """The names one space gives its knobs in Optuna. ``scoped`` (a union):
    ``<method>:<key>``; otherwise the config key itself."""

    def __init__(self, scoped: bool) -> None:
        self.scoped = scoped

    def name(self, method: str, key: str) -> str:
        return f"{method}{SEP}{key}" if self.scoped else key

    @staticmethod
    def key(name: str) -> str:
        """The config key an Optuna name stands for (``gholm:mu`` -> ``mu``)."""
        return name.partition(SEP)[2] or name

    @staticmethod
    def is_scoped(name: str) -> bool:
        """True for a knob of one method of a union (``gholm:mu``)."""
        return SEP in name

    def suggest(self, trial: Any, space: "MethodSpace") -> dict[str, Any]:
        """Suggest ``space``'s knobs on an Optuna trial; returns its constants
        (and the decoded value of every list-valued choice)."""
        out = dict(space.fixed)
        for key, spec in space.params.items():
            name = self.name(space.method, key)
            value = spec.suggest(trial, name)
            if spec.needs_decoding:
                out[name] = value
        return out

    def point(self, config: Mapping[str, Any], space: "MethodSpace") -> dict[str, Any]:
        """A plain config -> the Optuna values of ``space``'s knobs (what
        ``study.enqueue_trial`` and ``optuna.trial.FixedTrial`` take)."""
        point = {METHOD: space.method} if self.scoped else {}
        point.update({self.name(space.method, k): spec.encode(config[k]) for k, spec in space.params.items()})
        return point

    @staticmethod
    def decode(flat: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's config as Ray hands it -> a plain fgmodels config: the
        chosen method's ``<method>:<key>`` knobs become ``<key>``; another
        method's knobs, or a key given twice with different values, are refused."""
        method = flat.get(METHOD, TRAIN_DEFAULTS["method"])
        plain: dict[str, Any] = {}
        scoped: dict[str, Any] = {}
        for name, value in flat.items():
            owner, sep, key = name.partition(SEP)
            if not sep:
                plain[name] = value
                continue
            if owner != method:
                raise SpaceError(f"trial config holds knob {name!r} of method {owner!r} but its method is "
                                 f"{method!r}. Fix: pass the config from SearchSpace.define_by_run unchanged")
            scoped[key] = value
        for key, value in scoped.items():
            if key in plain and not same(plain[key], value):
                raise SpaceError(f"trial config sets {key!r} twice: {plain[key]!r} and {method}{SEP}{key}={value!r}. "
                                 f"Fix: fix the key with apply_overrides instead of adding it to the Tuner's param_space")
        return {**plain, **scoped}


def to_trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config as Ray hands it -> a plain fgmodels config (see :meth:`OptunaNames.decode`)."""
    return OptunaNames.decode(config)
