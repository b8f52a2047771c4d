"""Trial schedulers by name: what stops weak trials early.

One entry per algorithm in :data:`SCHEDULERS`; the plan records the name, the
tuner builds the entry, the plan printout asks it for its line. An entry's
``fit`` refuses a space or a searcher it cannot work with (OptionError, before
Ray). Whatever the algorithm, :func:`build_scheduler` wraps it in a
:class:`search.stops.RecordingScheduler`, so the reason a trial ended early is
the scheduler's own written decision, never re-inferred from its epoch count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from search.objective import METRIC, MODE, TIME_ATTR

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces import SearchSpace

MEDIAN_MIN_SAMPLES = 3  # other trials' curves the median is taken over (Ray's default)


@dataclass(frozen=True)
class Scheduler:
    build: Callable[["SearchPlan", "SearchSpace"], Any]  # -> a ray.tune.schedulers.TrialScheduler
    describe: Callable[["SearchPlan"], str]  # one line of the plan printout
    fit: Callable[["SearchPlan", "SearchSpace"], None] = lambda plan, space: None  # OptionError: cannot work
    checkpoints_per_trial: int | None = None  # Ray's num_to_keep when the scheduler needs more than the tuner's


def _asha(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, max_t=plan.max_epochs,
                         grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)


def _hyperband(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, max_t=plan.max_epochs,
                              reduction_factor=plan.reduction_factor)


def _median(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, grace_period=plan.grace_period,
                              min_samples_required=MEDIAN_MIN_SAMPLES)


def _fifo(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _pbt(plan: "SearchPlan", space: "SearchSpace") -> Any:
    from search.pbt import build_pbt

    return build_pbt(plan, space)


def _fit_pbt(plan: "SearchPlan", space: "SearchSpace") -> None:
    from search.pbt import check_pbt

    check_pbt(plan, space)


def _describe_pbt(plan: "SearchPlan") -> str:
    from search.pbt import describe_pbt

    return describe_pbt(plan)


SCHEDULERS: dict[str, Scheduler] = {
    "asha": Scheduler(build=_asha, describe=lambda p: (
        f"ASHA on {METRIC} ({MODE}), time unit {TIME_ATTR}: grace {p.grace_period}, "
        f"reduction factor {p.reduction_factor:g}, max {p.max_epochs} epochs")),
    "hyperband": Scheduler(build=_hyperband, describe=lambda p: (
        f"synchronous HyperBand on {METRIC} ({MODE}), time unit {TIME_ATTR}: reduction factor "
        f"{p.reduction_factor:g}, max {p.max_epochs} epochs (trials pause at each rung until their bracket is full)")),
    "median": Scheduler(build=_median, describe=lambda p: (
        f"median stopping rule on {METRIC} ({MODE}): after {p.grace_period} epoch(s), a trial whose best is below "
        f"the median of the other trials' running means (at least {MEDIAN_MIN_SAMPLES} of them) stops")),
    # a trial exploits another's checkpoint of a few epochs ago: Ray must not have deleted it yet
    "pbt": Scheduler(build=_pbt, fit=_fit_pbt, describe=_describe_pbt, checkpoints_per_trial=4),
    "none": Scheduler(build=_fifo, describe=lambda p: f"none (FIFO): every trial runs its {p.max_epochs} epochs"),
}


def build_scheduler(plan: "SearchPlan", space: "SearchSpace") -> Any:
    """The plan's scheduler, recording its early stops in the experiment folder."""
    from search.stops import RecordingScheduler

    inner = SCHEDULERS[plan.scheduler].build(plan, space)
    return RecordingScheduler(inner, plan.scheduler, last_epoch=plan.max_epochs, experiment_path=plan.experiment_path)
