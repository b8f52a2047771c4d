"""Seed statistics of re-run configurations: mean and spread of val_acc over
seeds, the winner by seed mean, and the plain sentence that says whether the
winner's lead is larger than the seed spread.

No Ray and no model here: the re-runs (:mod:`search.reruns`) produce the
values, the leaderboard (:mod:`search.results`) shows them.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); the sd is None for one value."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class SeedStats:
    """One configuration trained with several seeds (same split, same epochs)."""

    trial_id: str  # the search trial whose configuration was re-run
    seeds: tuple[int, ...]  # the search trial's seed first
    values: tuple[float, ...]  # best val_acc per seed, in the order of ``seeds``

    @property
    def mean(self) -> float:
        return mean_sd(self.values)[0]

    @property
    def sd(self) -> float:
        """Sample sd over the seeds (0 for a single seed: nothing measured)."""
        return mean_sd(self.values)[1] or 0.0


def by_mean(stats: Sequence[SeedStats]) -> list[SeedStats]:
    """Best seed mean first; ties keep the given order (the search's ranking)."""
    return sorted(stats, key=lambda s: -s.mean if not math.isnan(s.mean) else math.inf)


def spread_verdict(stats: Sequence[SeedStats]) -> str | None:
    """The sentence about the top two configurations by seed mean, or None
    with fewer than two. Their difference is compared with the larger of their
    two seed sds: a lead smaller than that is not a finding."""
    ranked = by_mean(stats)
    if len(ranked) < 2:
        return None
    first, second = ranked[0], ranked[1]
    diff, sd = first.mean - second.mean, max(first.sd, second.sd)
    if diff < sd:
        return (f"the top-2 difference {diff:.3f} is smaller than the seed sd {sd:.3f}: not a finding "
                f"({first.trial_id} vs {second.trial_id}, {len(first.values)} and {len(second.values)} seeds)")
    return (f"the top-2 difference {diff:.3f} exceeds the seed sd {sd:.3f} "
            f"({first.trial_id} vs {second.trial_id}, {len(first.values)} and {len(second.values)} seeds)")
