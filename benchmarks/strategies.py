"""The strategies the search benchmark compares, and one replayed search of each.

A strategy is a product searcher (its Optuna sampler, built by the same
function the product builds it with) and a scheduler rule (:mod:`benchmarks.replay`).
Every searcher proposes the space's ``first`` point first, as in the product.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

from benchmarks.replay import AshaRule, NoStop, PoolEntry, Replay, nearest, replay


@dataclass(frozen=True)
class Strategy:
    name: str
    searcher: str  # tpe | random | gp
    scheduler: str  # asha | none
    grace: int | None = None  # ASHA's grace; None: the benchmark's --grace-period auto value


STRATEGIES = (
    Strategy("random", "random", "none"),
    Strategy("random+ASHA", "random", "asha"),
    Strategy("TPE", "tpe", "none"),
    Strategy("TPE+ASHA", "tpe", "asha"),
    Strategy("GP", "gp", "none"),
    Strategy("random+ASHA grace 1", "random", "asha", grace=1),
    Strategy("TPE+ASHA grace 1", "tpe", "asha", grace=1),
)


def sampler(searcher: str, seed: int, num_samples: int, concurrency: int, space: Any) -> Any:
    """The product's Optuna sampler for ``searcher`` (search.searchers builds it the same way)."""
    from search import searchers

    build = {"tpe": searchers._tpe, "random": searchers._random, "gp": searchers._gp}[searcher]
    plan = SimpleNamespace(seed=seed, num_samples=num_samples, max_concurrent=concurrency, scheduler="none")
    return build(plan, space)


def run_strategy(strategy: Strategy, pool: Sequence[PoolEntry], space: Any, seed: int, budget: int, max_t: int,
                 grace: int, reduction_factor: float, concurrency: int, num_samples: int) -> Replay:
    """One replayed search of ``strategy`` with searcher seed ``seed``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize",
                                sampler=sampler(strategy.searcher, seed, num_samples, concurrency, space))
    for point in space.points_to_evaluate():
        study.enqueue_trial(point)

    def propose() -> tuple[int, Any]:
        trial = study.ask()
        space.define_by_run(trial)
        return nearest(trial.params, pool, trial.distributions), trial

    def tell(trial: Any, index: int, value: float) -> None:
        # the model learns from what ran: the proposal fails, the pool point is added with its value
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        study.add_trial(optuna.trial.create_trial(params=pool[index].params, distributions=trial.distributions,
                                                  value=value))

    rule = (AshaRule(strategy.grace or grace, max_t, reduction_factor) if strategy.scheduler == "asha"
            else NoStop(max_t))
    return replay(pool, propose, tell, rule, budget, concurrency)


def summarise(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample sd of the finite values, and how many were finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    mean = sum(finite) / len(finite)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return mean, sd, len(finite)
