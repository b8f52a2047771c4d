"""Population-based training: ``--scheduler pbt``.

Ray's PBT refuses any searcher beside its own random generator (it changes
the trials' configs under the searcher's feet), so ``pbt`` runs only with
``--searcher random``: the population is drawn at random from the space (its
``first`` points first) by Ray's generator over the space written as Ray
domains (:func:`ray_param_space`), then evolved.

Every ``--grace-period`` epochs, once every trial of the population has got
there (Ray's synchronous PBT: each trial waits, paused, for the others, so a
decision never depends on which trials happen to have reported first, and
the whole population is ranked at every step), a trial in the bottom quarter
by ``val_acc`` copies the weights of one in the top quarter (Ray restores its checkpoint into
the weak trial) and continues with that trial's configuration, in which each
knob the space lists under ``mutable`` is perturbed (x0.8 or x1.2, or redrawn
from its range with probability 1/4) and then clipped into its range, so a
trial's config never leaves the space. The trainable resumes from
``tune.get_checkpoint()`` and resolves the config it is handed, so the
perturbed values are the ones it trains with.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search.objective import METRIC, MODE, TIME_ATTR
from search.options import OptionError

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces import MethodSpace, SearchSpace

QUANTILE = 0.25
RESAMPLE_PROBABILITY = 0.25


def check_pbt(plan: "SearchPlan", space: "SearchSpace") -> None:
    """Refuse what PBT cannot do, with the reason."""
    if plan.searcher != "random":
        why = ("PBT changes trials' knobs to values off the grid" if plan.searcher == "grid" else
               "Ray's PBT evolves a population drawn at random and refuses a model-based searcher beside it")
        raise OptionError(f"--searcher {plan.searcher} with --scheduler pbt: {why}. "
                          f"Fix: --searcher random with pbt, or another --scheduler with --searcher {plan.searcher}")
    if space.is_union:
        raise OptionError(f"--scheduler pbt cannot search the union space {space.name!r}: a trial copying another "
                          f"method's weights cannot continue. Fix: search one method (--space NAME or "
                          f"--set method=NAME), or another --scheduler")
    if not space.member(space.method).mutable:
        raise OptionError(f"--scheduler pbt: space {space.name!r} marks no knob as mutable. Fix: add e.g. "
                          f"`mutable: [lr, weight_decay]` (searched uniform/loguniform knobs) to {space.source}, "
                          f"or use another --scheduler")


def mutations(space: "MethodSpace") -> dict[str, Any]:
    """Config key -> the Ray domain PBT redraws it from."""
    from ray import tune

    out = {}
    for key in space.mutable:
        spec = space.params[key]
        out[key] = (tune.loguniform if spec.type == "loguniform" else tune.uniform)(spec.low, spec.high)
    return out


class ClipToSpace:
    """PBT's ``custom_explore_fn``: a perturbed value goes back into its knob's range."""

    def __init__(self, bounds: dict[str, tuple[float, float]]) -> None:
        self.bounds = bounds

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (low, high) in self.bounds.items():
            if key in config:
                config[key] = min(max(float(config[key]), low), high)
        return config


def build_pbt(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from ray.tune.schedulers import PopulationBasedTraining

    member = space.member(space.method)
    bounds = {k: (float(member.params[k].low), float(member.params[k].high)) for k in member.mutable}
    return PopulationBasedTraining(time_attr=TIME_ATTR, metric=METRIC, mode=MODE,
                                   perturbation_interval=plan.grace_period, hyperparam_mutations=mutations(member),
                                   quantile_fraction=QUANTILE, resample_probability=RESAMPLE_PROBABILITY,
                                   custom_explore_fn=ClipToSpace(bounds), synch=True)


def describe_pbt(plan: "SearchPlan") -> str:
    return (f"population-based training on {METRIC} ({MODE}): every {plan.grace_period} epoch(s), once all trials "
            f"got there, the bottom "
            f"{QUANTILE:.0%} copy a top trial's weights and perturb its mutable knobs; nothing stops early")


def ray_param_space(space: "SearchSpace") -> dict[str, Any]:
    """A one-method space as Ray's random generator takes it: constants as
    they are, each knob as the Ray domain of its distribution."""
    from ray import tune

    member = space.member(space.method)
    out: dict[str, Any] = dict(member.fixed)
    for key, spec in member.params.items():
        if spec.type == "choice":
            out[key] = tune.choice(list(spec.values))
        elif spec.type == "loguniform":
            out[key] = tune.loguniform(spec.low, spec.high)
        elif spec.type == "uniform":
            out[key] = tune.quniform(spec.low, spec.high, spec.step) if spec.step else tune.uniform(spec.low, spec.high)
        elif spec.log:
            out[key] = tune.lograndint(spec.low, spec.high + 1)
        else:
            out[key] = tune.qrandint(spec.low, spec.high, spec.step or 1)
    return out


def population(plan: "SearchPlan", space: "SearchSpace") -> Any:
    """Ray's random generator of PBT's population, the space's first points first."""
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=[dict(p) for p in space.first] or None, random_state=plan.seed,
                                 max_concurrent=plan.max_concurrent or 0)
