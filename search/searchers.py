"""Searchers by name: what proposes each trial's configuration.

One entry per algorithm in :data:`SEARCHERS`; the plan records the name, the
tuner builds the entry, the plan printout asks it for its line. Every searcher
is an Optuna sampler behind Ray's ``OptunaSearch``, asking the space's own
define-by-run function (so conditional and union spaces work); every one
proposes the space's ``first`` points before anything of its own, maximises
the one objective (:mod:`search.objective`), or with ``--objective`` also
minimises test-time costs (:mod:`search.pareto`), and draws from the plan's seed.

An entry's ``fit`` refuses a space it cannot search (OptionError, before Ray)
and may settle the number of trials (the grid runs each point once).

TPE's settings follow the search's size and concurrency (:func:`tpe_settings`):
``n_startup_trials = max(3, min(10, num_samples // 4))`` random trials before
the model (a quarter of a small search, never more than Optuna's 10), a
multivariate model (knobs such as lr and weight decay interact), and the
constant liar when more than one trial can run at once, so trials started
together do not all land on the same point.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from search.options import OptionError

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces import SearchSpace

Sampler = Callable[["SearchPlan", "SearchSpace"], Any]  # -> an optuna.samplers.BaseSampler


@dataclass(frozen=True)
class Searcher:
    build: Callable[["SearchPlan", "SearchSpace"], Any]  # -> a ray.tune.search.Searcher
    describe: Callable[["SearchPlan"], str]  # one line of the plan printout
    # (plan, space with overrides, --num-samples given?) -> the plan it can run; OptionError if none
    fit: Callable[["SearchPlan", "SearchSpace", bool], "SearchPlan"] = lambda plan, space, given: plan


def optuna_searcher(sampler: Sampler) -> Callable[["SearchPlan", "SearchSpace"], Any]:
    """Ray's OptunaSearch around ``sampler(plan, space)``, asking the space's own
    define-by-run function (so conditional and union spaces work)."""
    def build(plan: "SearchPlan", space: "SearchSpace") -> Any:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from search.pareto import searcher_objective

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metric, mode = searcher_objective(plan.objective)  # val_acc, or val_acc and costs (several directions)
        return OptunaSearch(space=space.define_by_run, metric=metric, mode=mode, sampler=sampler(plan, space),
                            points_to_evaluate=space.points_to_evaluate() or None)
    return build


def needs(searcher: str, *modules: str) -> Callable[["SearchPlan", "SearchSpace", bool], "SearchPlan"]:
    """A ``fit`` that refuses the searcher when a package its sampler imports is missing."""
    def fit(plan: "SearchPlan", space: "SearchSpace", given: bool) -> "SearchPlan":
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise OptionError(f"--searcher {searcher} needs the package(s) {', '.join(missing)}, not installed. "
                              f"Fix: pip install {' '.join(missing)}, or use another --searcher (e.g. tpe)")
        return plan
    return fit


# ---------------------------------------------------------------- TPE
def tpe_settings(plan: "SearchPlan") -> dict[str, Any]:
    """TPE's settings for this search's size and concurrency (rule in the module docstring)."""
    return {"n_startup_trials": max(3, min(10, plan.num_samples // 4)), "multivariate": True,
            "constant_liar": plan.max_concurrent != 1 and plan.num_samples > 1}


def _tpe(plan: "SearchPlan", space: "SearchSpace") -> Any:
    import optuna

    # group: a union's methods have disjoint knobs, modelled per method
    return optuna.samplers.TPESampler(seed=plan.seed, group=space.is_union, **tpe_settings(plan))


def _describe_tpe(plan: "SearchPlan") -> str:
    s = tpe_settings(plan)
    return (f"Optuna TPE (seed {plan.seed}): {s['n_startup_trials']} random startup trial(s), multivariate, "
            f"constant liar {'on' if s['constant_liar'] else 'off (one trial at a time)'}; "
            f"the space's `first` point(s) evaluated first")


# ---------------------------------------------------------------- grid
def _grid(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from search.grid import FirstAwareGridSampler, space_grid

    return FirstAwareGridSampler(space_grid(space), seed=plan.seed)


def _fit_grid(plan: "SearchPlan", space: "SearchSpace", given: bool) -> "SearchPlan":
    """The grid runs each point once in order, after the space's first points (a
    first point on the grid is that point's run): that many trials by default,
    and at most that many."""
    from search.grid import first_points_off_grid, grid_size, space_grid

    grid = space_grid(space)
    whole = grid_size(grid) + first_points_off_grid(space, grid)
    return replace(plan, num_samples=min(plan.num_samples, whole) if given else whole)


# ---------------------------------------------------------------- the others
def _random(plan: "SearchPlan", space: "SearchSpace") -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=plan.seed)


def _random_build(plan: "SearchPlan", space: "SearchSpace") -> Any:
    if plan.scheduler == "pbt":  # Ray's PBT accepts only its own random generator beside it
        from search.pbt import population

        return population(plan, space)
    return optuna_searcher(_random)(plan, space)


def _cmaes(plan: "SearchPlan", space: "SearchSpace") -> Any:
    import optuna

    # choice knobs are drawn at random beside the CMA-ES model of the numeric ones
    return optuna.samplers.CmaEsSampler(seed=plan.seed, warn_independent_sampling=False)


def _gp(plan: "SearchPlan", space: "SearchSpace") -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=plan.seed, n_startup_trials=tpe_settings(plan)["n_startup_trials"],
                                     warn_independent_sampling=False)


def _qmc(plan: "SearchPlan", space: "SearchSpace") -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental" since Optuna 3.0; the printout names the sampler
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(seed=plan.seed, scramble=True, warn_independent_sampling=False,
                                          warn_asynchronous_seeding=False)


FIRST = "the space's `first` point(s) evaluated first"

SEARCHERS: dict[str, Searcher] = {
    "tpe": Searcher(build=optuna_searcher(_tpe), describe=_describe_tpe),
    "random": Searcher(build=_random_build, describe=lambda p: (
        f"{'Ray`s random generator of the PBT population' if p.scheduler == 'pbt' else 'Optuna random sampling'} "
        f"(seed {p.seed}), {FIRST}")),
    "grid": Searcher(build=optuna_searcher(_grid), fit=_fit_grid, describe=lambda p: (
        f"Optuna grid over every choice and step of the space: {p.num_samples} trial(s) = the `first` point(s), "
        f"then every other grid point once, in order (--num-samples defaults to that and is capped at it)")),
    "cmaes": Searcher(build=optuna_searcher(_cmaes), fit=needs("cmaes", "cmaes"), describe=lambda p: (
        f"Optuna CMA-ES (seed {p.seed}) on the numeric knobs, choices drawn at random; {FIRST}")),
    "gp": Searcher(build=optuna_searcher(_gp), fit=needs("gp", "scipy", "torch"), describe=lambda p: (
        f"Optuna Gaussian-process BO (seed {p.seed}), {tpe_settings(p)['n_startup_trials']} random startup "
        f"trial(s); {FIRST}")),
    "qmc": Searcher(build=optuna_searcher(_qmc), fit=needs("qmc", "scipy"), describe=lambda p: (
        f"Optuna quasi-Monte Carlo (scrambled Sobol, seed {p.seed}), {FIRST}")),
}


def build_searcher(plan: "SearchPlan", space: "SearchSpace") -> Any:
    return SEARCHERS[plan.searcher].build(plan, space)


def searcher_param_space(plan: "SearchPlan", space: "SearchSpace") -> dict[str, Any] | None:
    """The Tuner's ``param_space``: None for an Optuna searcher (it asks the
    space itself), the space as Ray domains for PBT's random generator."""
    if plan.scheduler == "pbt":
        from search.pbt import ray_param_space

        return ray_param_space(space)
    return None
