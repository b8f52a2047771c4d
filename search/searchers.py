"""Searchers by name: what proposes each trial's configuration.

One entry per algorithm in :data:`SEARCHERS`; the plan records the name, the
tuner builds the entry, the plan printout asks it for its line. Every searcher
proposes the space's ``first`` points before anything of its own, maximises
the one objective (:mod:`search.objective`), or with ``--objective`` also
minimises test-time costs (:mod:`search.pareto`), and draws from the plan's seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces import SearchSpace


@dataclass(frozen=True)
class Searcher:
    build: Callable[["SearchPlan", "SearchSpace"], Any]  # -> a ray.tune.search.Searcher
    describe: Callable[["SearchPlan"], str]  # one line of the plan printout


def optuna_searcher(sampler: Callable[[int], Any]) -> Callable[["SearchPlan", "SearchSpace"], Any]:
    """Ray's OptunaSearch around ``sampler(seed)``, asking the space's own
    define-by-run function (so conditional and union spaces work)."""
    def build(plan: "SearchPlan", space: "SearchSpace") -> Any:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from search.pareto import searcher_objective

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metric, mode = searcher_objective(plan.objective)  # val_acc, or val_acc and costs (several directions)
        return OptunaSearch(space=space.define_by_run, metric=metric, mode=mode, sampler=sampler(plan.seed),
                            points_to_evaluate=space.points_to_evaluate() or None)
    return build


def _tpe(seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


SEARCHERS: dict[str, Searcher] = {
    "tpe": Searcher(build=optuna_searcher(_tpe),
                    describe=lambda p: f"Optuna TPE (seed {p.seed}), the space's `first` point(s) evaluated first"),
}


def build_searcher(plan: "SearchPlan", space: "SearchSpace") -> Any:
    return SEARCHERS[plan.searcher].build(plan, space)
