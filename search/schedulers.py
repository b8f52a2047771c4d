"""Trial schedulers by name: what stops weak trials early.

One entry per algorithm in :data:`SCHEDULERS`; the plan records the name, the
tuner builds the entry, the plan printout asks it for its line. Whatever the
algorithm, :func:`build_scheduler` wraps it in a
:class:`search.stops.RecordingScheduler`, so the reason a trial ended early is
the scheduler's own written decision, never re-inferred from its epoch count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from search.objective import METRIC, MODE, TIME_ATTR

if TYPE_CHECKING:
    from search.plan import SearchPlan


@dataclass(frozen=True)
class Scheduler:
    build: Callable[["SearchPlan"], Any]  # -> a ray.tune.schedulers.TrialScheduler
    describe: Callable[["SearchPlan"], str]  # one line of the plan printout


def _asha(plan: "SearchPlan") -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, max_t=plan.max_epochs,
                         grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)


SCHEDULERS: dict[str, Scheduler] = {
    "asha": Scheduler(build=_asha, describe=lambda p: (
        f"ASHA on {METRIC} ({MODE}), time unit {TIME_ATTR}: grace {p.grace_period}, "
        f"reduction factor {p.reduction_factor:g}, max {p.max_epochs} epochs")),
}


def build_scheduler(plan: "SearchPlan") -> Any:
    """The plan's scheduler, recording its early stops in the experiment folder."""
    from search.stops import RecordingScheduler

    inner = SCHEDULERS[plan.scheduler].build(plan)
    return RecordingScheduler(inner, plan.scheduler, last_epoch=plan.max_epochs, experiment_path=plan.experiment_path)
