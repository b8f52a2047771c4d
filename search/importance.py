"""Hyperparameter importance with Optuna, from a study rebuilt out of the
trial records (so it also works after ``--resume`` or on a copied folder).

Each trial's resolved configuration is turned into Optuna values by the
space's :class:`~search.spaces.OptunaNames` and replayed through its
define-by-run function on an ``optuna.trial.FixedTrial``, which yields exactly
the Optuna names and distributions the search used. The value is the trial's
best val_acc (pruned trials included, at the level they reached).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Iterable

from search.records import ERRORED, UNFINISHED, TrialRecord
from search.spaces import SearchSpace

log = logging.getLogger(__name__)
MIN_TRIALS = 3  # fewer finished trials say nothing about importance


def optuna_point(space: SearchSpace, record: TrialRecord) -> dict[str, Any]:
    """Optuna parameter names -> stored values for one trial."""
    return space.names.point(record.config, space.member(record.method))


def rebuild_study(space: SearchSpace, records: Iterable[TrialRecord], strip_method: bool = False) -> Any:
    """A maximise study holding one COMPLETE trial per usable record."""
    import optuna

    study = optuna.create_study(direction="maximize")
    for record in records:
        if record.status in (ERRORED, UNFINISHED) or record.best_val_acc != record.best_val_acc:
            continue
        fixed = optuna.trial.FixedTrial(optuna_point(space, record))
        space.define_by_run(fixed)
        params, dists = dict(fixed.params), dict(fixed.distributions)
        if strip_method:
            params.pop("method", None)
            dists.pop("method", None)
            params = {space.names.key(k): v for k, v in params.items()}
            dists = {space.names.key(k): v for k, v in dists.items()}
        if not dists:
            continue
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=record.best_val_acc))
    return study


def param_importances(space: SearchSpace, records: list[TrialRecord]) -> dict[str, dict[str, float]]:
    """``{"all": {...}, <method>: {...}}``: the overall importances, plus one
    set per method when the space searches several (a method's knobs only
    mean something among that method's trials)."""
    import optuna

    groups: dict[str, dict[str, float]] = {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        groups["all"] = _importances(rebuild_study(space, records))
        if space.is_union:
            for method in space.methods:
                mine = [r for r in records if r.method == method]
                groups[method] = _importances(rebuild_study(space, mine, strip_method=True))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {k: v for k, v in groups.items() if v}


def _importances(study: Any) -> dict[str, float]:
    import optuna

    if len(study.trials) < MIN_TRIALS:
        return {}
    values = {t.value for t in study.trials}
    if len(values) < 2:
        return {}  # every trial scored the same: nothing to attribute
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError) as err:
        log.warning("parameter importance not computed: %s", err)
        return {}
