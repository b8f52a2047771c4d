"""Configs drawn from a space without Ray: what trials would receive."""
from __future__ import annotations

from typing import Any

from search.spaces.base import SearchSpace
from search.spaces.checks import SpaceError


def sample_configs(space: SearchSpace, n: int, seed: int = 0, sampler: str = "random",
                   include_first: bool = False) -> list[dict[str, Any]]:
    """``n`` plain configs drawn through ``define_by_run`` and decoded by the
    space's Optuna names, as a Ray trial gets them (in-memory study, no Ray).
    With ``include_first`` the first configs come first (they count toward ``n``)."""
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
            configs.append(space.to_trial_config({**trial.params, **returned}))
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return configs
