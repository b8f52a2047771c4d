"""Tabular replay of searchers and schedulers on recorded learning curves.

A pool of configurations was trained once to full length, every epoch's
val_acc and wall time recorded (:mod:`benchmarks.search_pool`). A replayed
search asks the product's own Optuna sampler for a configuration (the same
space -> Optuna encoding the product uses), answers it with the NEAREST pool
configuration in the normalised space (ranges scaled to [0, 1], log ranges in
log space, a different choice counts 1) and plays that configuration's
recorded curve, epoch by epoch, through a scheduler rule. The study is told
the pool configuration that actually ran (the proposal is marked failed and
the pool point added with its value), so the model learns from what was
measured, and, like Ray's ``OptunaSearch``, it is told the trial's LAST
reported val_acc (a stopped trial's value at its stop).

Trials run ``concurrency`` at a time, in the order of their recorded epoch
wall times (an event simulation), until the budget in trial-epochs is spent;
the epoch that crosses the budget is the last one counted.

:class:`AshaRule` is Ray's ``AsyncHyperBandScheduler`` (one bracket,
``stop_last_trials``) rewritten line by line: rungs at grace * rf**k below
max_t, a trial that reaches a rung first is recorded there and stops when
its value is below the (1 - 1/rf) percentile of the values already recorded
at that rung.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class PoolEntry:
    """One configuration trained to full length: its Optuna values, and per epoch val_acc and wall seconds."""

    params: dict[str, Any]
    curve: tuple[float, ...]
    epoch_s: tuple[float, ...]


class AshaRule:
    """Ray's asynchronous successive halving, one bracket (``brackets=1``)."""

    def __init__(self, grace: int, max_t: int, reduction_factor: float) -> None:
        self.rf, self.max_t = reduction_factor, max_t
        n = int(np.log(max_t / grace) / np.log(reduction_factor) + 1)
        self.rungs: list[tuple[float, dict[int, float]]] = [(grace * reduction_factor ** k, {})
                                                            for k in reversed(range(n))]

    @property
    def milestones(self) -> list[float]:
        return sorted(m for m, _ in self.rungs)

    def stop(self, trial: int, epoch: int, value: float) -> bool:
        """True when the trial stops after ``epoch`` (max_t reached or below the rung's cutoff)."""
        if epoch >= self.max_t:
            return True
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial in recorded:
                continue
            cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100) if recorded else None
            recorded[trial] = value
            return cutoff is not None and value < cutoff
        return False


class NoStop:
    """FIFO: every trial runs to max_t."""

    def __init__(self, max_t: int) -> None:
        self.max_t = max_t

    def stop(self, trial: int, epoch: int, value: float) -> bool:
        return epoch >= self.max_t


# ---------------------------------------------------------------- nearest pool configuration
def distance(a: Mapping[str, Any], b: Mapping[str, Any], dists: Mapping[str, Any]) -> float:
    """Euclidean distance in the normalised space of Optuna distributions ``dists``."""
    import optuna.distributions as od

    total = 0.0
    for name, d in dists.items():
        if isinstance(d, od.CategoricalDistribution):
            total += 0.0 if a[name] == b[name] else 1.0
            continue
        lo, hi, x, y = d.low, d.high, a[name], b[name]
        if getattr(d, "log", False):
            lo, hi, x, y = math.log(lo), math.log(hi), math.log(x), math.log(y)
        total += ((x - y) / (hi - lo)) ** 2 if hi > lo else 0.0
    return math.sqrt(total)


def nearest(params: Mapping[str, Any], pool: Sequence[PoolEntry], dists: Mapping[str, Any]) -> int:
    return min(range(len(pool)), key=lambda i: (distance(params, pool[i].params, dists), i))


# ---------------------------------------------------------------- one replayed search
@dataclass
class Replay:
    """What one replayed search did: per counted epoch, the cumulative trial-epochs,
    wall seconds and best val_acc so far; and the pool index of each trial."""

    epochs: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)
    stopped_at: list[int] = field(default_factory=list)

    @property
    def final_best(self) -> float:
        return self.best[-1] if self.best else float("nan")

    def budget_to_reach(self, target: float) -> float:
        """Trial-epochs spent when the best first reached ``target`` (inf if never)."""
        for spent, b in zip(self.epochs, self.best):
            if b >= target - 1e-12:
                return float(spent)
        return math.inf


Propose = Callable[[], tuple[int, Any]]  # -> (pool index, handle given back to ``tell``)
Tell = Callable[[Any, int, float], None]  # (handle, pool index, last val_acc)


def replay(pool: Sequence[PoolEntry], propose: Propose, tell: Tell, rule: Any, budget: int,
           concurrency: int = 1) -> Replay:
    """Play proposals through ``rule`` on ``concurrency`` workers until ``budget`` trial-epochs are spent."""
    out = Replay()
    events: list[tuple[float, int, int, int, Any]] = []  # (finish time, trial id, pool index, epoch, handle)
    spent, best, next_id = 0, -math.inf, 0

    def start(now: float) -> None:
        nonlocal next_id
        index, handle = propose()
        out.trials.append(index)
        heapq.heappush(events, (now + pool[index].epoch_s[0], next_id, index, 1, handle))
        next_id += 1

    for _ in range(concurrency):
        start(0.0)
    while events and spent < budget:
        now, tid, index, epoch, handle = heapq.heappop(events)
        value = pool[index].curve[epoch - 1]
        spent += 1
        best = max(best, value)
        out.epochs.append(spent)
        out.wall.append(now)
        out.best.append(best)
        if rule.stop(tid, epoch, value):
            out.stopped_at.append(epoch)
            tell(handle, index, value)
            if spent < budget:
                start(now)
        else:
            heapq.heappush(events, (now + pool[index].epoch_s[epoch], tid, index, epoch + 1, handle))
    return out
