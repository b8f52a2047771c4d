"""Accuracy against cost: the Pareto front against a hand-computed one, the
leaderboard's cost and pareto columns, --objective parsing and the searcher's
directions."""
from __future__ import annotations

import pytest

from search.pareto import pareto_mask, parse_objective, searcher_objective
from search.records import COMPLETED, DIVERGED, PRUNED, TrialRecord
from search.results import leaderboard_rows

# (name, best val_acc, ms per image, gflops) and whether each is on the (acc, ms) front, by hand
TABLE = [
    ("a", 0.90, 20.0, 3.0),  # the most accurate
    ("b", 0.80, 10.0, 2.0),
    ("c", 0.80, 10.0, 1.0),  # equal to b: neither dominates, both stay
    ("d", 0.80, 15.0, 0.5),  # same accuracy as b, costs more: dominated
    ("e", 0.70, 10.0, 2.0),  # same cost as b, less accurate: dominated
    ("f", 0.60, 5.0, 2.0),  # the cheapest
    ("g", 0.90, 25.0, 1.0),  # same accuracy as a, slower: dominated
    ("h", 0.50, 5.0, 2.0),  # same cost as f, less accurate: dominated
]
FRONT_MS = {"a", "b", "c", "f"}
# with gflops as a second cost: c beats b (equal acc and ms, fewer gflops); d, g are cheapest in gflops
FRONT_MS_GFLOPS = {"a", "c", "d", "f", "g"}


def test_front_of_a_fixed_table_matches_the_hand_computed_one() -> None:
    mask = pareto_mask([(acc, ms) for _, acc, ms, _ in TABLE])
    assert {name for (name, *_), keep in zip(TABLE, mask) if keep} == FRONT_MS
    mask = pareto_mask([(acc, ms, gf) for _, acc, ms, gf in TABLE])
    assert {name for (name, *_), keep in zip(TABLE, mask) if keep} == FRONT_MS_GFLOPS


def _record(name: str, acc: float, ms: float | None, gf: float, status: str = COMPLETED) -> TrialRecord:
    cost = {} if ms is None else {"cost_ms_per_image": ms, "cost_gflops": gf, "cost_params_m": 1.5}
    return TrialRecord(trial_id=name, method="baseline", config={}, knobs={}, curve=[(1, acc)], status=status,
                       best_val_acc=acc, best_epoch=1, epochs_run=1, cost=cost)


def test_leaderboard_marks_the_front_and_shows_costs() -> None:
    records = [_record(*row, status=PRUNED if row[0] == "e" else COMPLETED) for row in TABLE]
    records += [_record("x", 0.99, 1.0, 0.1, status=DIVERGED),  # would dominate all, but is not rankable
                _record("y", 0.95, None, 0.0)]  # measured no cost: cannot be placed
    header, rows = leaderboard_rows(records, ["latency"])
    table = {row[header.index("trial_id")]: dict(zip(header, row)) for row in rows}
    assert {t for t, row in table.items() if row["pareto"] == "yes"} == FRONT_MS
    assert table["d"]["cost_ms_per_image"] == "15" and table["c"]["cost_gflops"] == "1"
    assert table["y"]["cost_ms_per_image"] == "" and table["y"]["pareto"] == "no"
    header, rows = leaderboard_rows(records, ["latency", "gflops"])
    assert {row[1] for row in rows if row[-1] == "yes"} == FRONT_MS_GFLOPS


@pytest.mark.parametrize("text", ["latency", "val_acc,speed", "val_acc,latency,latency", ""])
def test_bad_objectives_are_refused_with_a_fix(text: str) -> None:
    with pytest.raises(ValueError, match="Fix: "):
        parse_objective(text)


def test_searcher_directions() -> None:
    assert searcher_objective("val_acc") == ("val_acc", "max")
    assert searcher_objective("val_acc, latency,params") == (
        ["val_acc", "cost_ms_per_image", "cost_params_m"], ["max", "min", "min"])
