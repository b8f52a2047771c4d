"""The search benchmark's replay: ASHA stops what Ray's scheduler stops, the
budget is counted in trial-epochs, proposals land on the nearest pool point."""
from __future__ import annotations

import random
from types import SimpleNamespace

import optuna
import pytest

from benchmarks.replay import AshaRule, NoStop, PoolEntry, nearest, replay

# val_acc per epoch; max_t 4, grace 1, rf 2: rungs at epochs 1, 2 (and 4, never reached before max_t)
CURVES = {"A": [0.5, 0.6, 0.7, 0.8], "B": [0.4, 0.9, 0.9, 0.9], "C": [0.6, 0.5, 0.9, 0.9], "D": [0.55, 0.9, 0.9, 0.9]}
POOL = [PoolEntry({"x": i}, tuple(c), (1.0,) * 4) for i, c in enumerate(CURVES.values())]


def _sequential(order: list[int]):
    it, told = iter(order), []
    return (lambda: (lambda i: (i, i))(next(it))), (lambda h, i, v: told.append((i, v))), told


def test_asha_replay_stops_the_hand_computed_trials() -> None:
    # A runs to the end (first at each rung); B 0.4 < median {0.5} at rung 1; C passes rung 1
    # (0.6 >= median {0.5, 0.4} = 0.45) and stops at rung 2 (0.5 < {0.6}); D passes both (0.55 >= 0.5, 0.9 >= 0.55)
    propose, tell, told = _sequential([0, 1, 2, 3])
    out = replay(POOL, propose, tell, AshaRule(1, 4, 2.0), budget=11, concurrency=1)
    assert out.trials == [0, 1, 2, 3] and out.stopped_at == [4, 1, 2, 4]
    assert told == [(0, 0.8), (1, 0.4), (2, 0.5), (3, 0.9)]  # the LAST value, as OptunaSearch tells
    assert out.epochs == list(range(1, 12)) and out.final_best == 0.9


def test_budget_is_counted_in_trial_epochs_and_cuts_the_last_trial() -> None:
    propose, tell, told = _sequential([0, 1, 2, 3])
    out = replay(POOL, propose, tell, AshaRule(1, 4, 2.0), budget=9, concurrency=1)
    # A 4 + B 1 + C 2 = 7 epochs, then D runs 2 of its epochs and is cut (never told)
    assert out.epochs[-1] == 9 and len(out.epochs) == 9 and told[-1] == (2, 0.5) and len(told) == 3
    assert out.best == [0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9]
    assert out.budget_to_reach(0.8) == 4 and out.budget_to_reach(0.9) == 9 and out.budget_to_reach(0.95) == float("inf")


def test_no_stop_runs_every_trial_to_max_t_and_concurrency_orders_by_wall_time() -> None:
    slow = [PoolEntry({"x": 0}, (0.1, 0.2), (5.0, 5.0)), PoolEntry({"x": 1}, (0.3, 0.4), (1.0, 1.0))]
    propose, tell, told = _sequential([0, 1, 1, 1])
    out = replay(slow, propose, tell, NoStop(2), budget=6, concurrency=2)
    # the fast trials end at t=2 and t=4, each freeing its worker; the slow one's first epoch ends at t=5,
    # tied with the third fast trial's first epoch (the earlier trial first)
    assert out.wall == [1.0, 2.0, 3.0, 4.0, 5.0, 5.0] and out.best == [0.3, 0.4, 0.4, 0.4, 0.4, 0.4]
    assert out.trials == [0, 1, 1, 1] and told == [(1, 0.4), (1, 0.4)] and out.stopped_at == [2, 2]


@pytest.mark.parametrize("grace,max_t,rf", [(1, 8, 2.0), (2, 10, 2.0), (1, 9, 3.0)])
def test_asha_rule_decides_as_rays_scheduler(grace: int, max_t: int, rf: float) -> None:
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    rng = random.Random(grace * 100 + max_t)
    ray_asha = AsyncHyperBandScheduler(time_attr="epoch", metric="val_acc", mode="max", grace_period=grace,
                                       max_t=max_t, reduction_factor=rf)
    mine = AshaRule(grace, max_t, rf)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(12)]
    for t in trials:
        ray_asha.on_trial_add(None, t)
    epoch = {i: 0 for i in range(12)}
    live = set(range(12))
    decisions = 0
    while live:  # results interleaved at random, as concurrent trials report
        i = rng.choice(sorted(live))
        epoch[i] += 1
        value = round(rng.random(), 2)
        result = {"epoch": epoch[i], "val_acc": value}
        ray_stop = ray_asha.on_trial_result(None, trials[i], result) == TrialScheduler.STOP
        assert mine.stop(i, epoch[i], value) == ray_stop
        decisions += ray_stop and epoch[i] < max_t
        if ray_stop:
            live.discard(i)
    assert decisions > 0  # the table makes ASHA stop some trials early


def test_nearest_uses_the_normalised_space() -> None:
    dists = {"u": optuna.distributions.FloatDistribution(0.0, 10.0),
             "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
             "c": optuna.distributions.CategoricalDistribution(["a", "b"])}
    pool = [PoolEntry({"u": 0.0, "lr": 1e-3, "c": "b"}, (0.0,), (1.0,)),  # distance 1 (choice differs)
            PoolEntry({"u": 9.0, "lr": 1e-3, "c": "a"}, (0.0,), (1.0,)),  # 0.9
            PoolEntry({"u": 0.0, "lr": 1e-2, "c": "a"}, (0.0,), (1.0,))]  # 0.5 (half the log range)
    assert nearest({"u": 0.0, "lr": 1e-3, "c": "a"}, pool, dists) == 2
