"""Seed re-runs of the top trials: seed mean and sd against hand computations,
the "within the seed spread" sentence on fixed tables (it appears exactly when
the top-2 difference is below the larger seed sd), the leaderboard's seed
columns, the winner by seed mean, which configurations are re-run, and the
options' defaults and checks. The real search that re-runs trials is in
tests/test_final_fit.py (one search covers both)."""
from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path

import pytest

from search.plan import resolve_plan
from search.records import COMPLETED, DIVERGED, PRUNED, TrialRecord
from search.reruns import FixedConfigs, StopAtEpoch, config_key, rerun_plan, seed_stats
from search.results import leaderboard_rows, winner, write_leaderboard
from search.seeds import SeedStats, spread_verdict
from search.spaces import load_space
from tests.test_cli import _no_ray_cli, _one_error_line

NOT_A_FINDING = "not a finding"


def _record(tid: str, acc: float, status: str = COMPLETED, seed: int = 0, epochs: int = 3) -> TrialRecord:
    cfg = {"method": "baseline", "lr": 0.01, "seed": seed, "epochs": 3, "amp": False, "workers": 2}
    return TrialRecord(trial_id=tid, method="baseline", config=cfg, knobs={"lr": 0.01}, curve=[(epochs, acc)],
                       status=status, best_val_acc=acc, best_epoch=epochs, epochs_run=epochs)


# ----------------------------------------------------------------- statistics by hand
def test_seed_mean_and_sd_equal_a_hand_computation() -> None:
    s = SeedStats("a", (0, 1, 2), (0.5, 0.6, 0.7))
    assert math.isclose(s.mean, 0.6) and math.isclose(s.sd, 0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    s = SeedStats("b", (0, 1), (0.70, 0.74))
    assert math.isclose(s.mean, 0.72) and math.isclose(s.sd, math.sqrt(2 * 0.02 ** 2))  # 0.028284...
    assert SeedStats("c", (0,), (0.5,)).sd == 0.0


@pytest.mark.parametrize("table,finding", [
    # (values per configuration); the top two by mean and the larger of their sds, by hand:
    ({"a": (0.80, 0.82, 0.84), "b": (0.77, 0.78, 0.79)}, False),  # means .82/.78: diff .04 > sd .02
    ({"a": (0.80, 0.90), "b": (0.82, 0.84)}, True),  # means .85/.83: diff .02 < sd .0707
    ({"a": (0.70, 0.72), "b": (0.80, 0.81), "c": (0.50, 0.51)}, False),  # b .805 vs a .71: .095 > .0141
    ({"a": (0.60, 0.70), "b": (0.64, 0.65), "c": (0.10, 0.90)}, True),  # a .65, b .645 (c .5 third): .005 < .0707
])
def test_the_spread_sentence_appears_exactly_when_the_lead_is_within_the_seed_sd(table: dict, finding: bool) -> None:
    stats = [SeedStats(name, tuple(range(len(v))), v) for name, v in table.items()]
    text = spread_verdict(stats)
    assert text is not None and text.startswith("the top-2 difference")
    assert (NOT_A_FINDING in text) == finding, text


def test_the_sentence_names_the_numbers_of_the_brief() -> None:
    stats = [SeedStats("a", (0, 1), (0.512, 0.556)), SeedStats("b", (0, 1), (0.500, 0.544))]
    # diff 0.012, sd of each: 0.044 / sqrt(2) = 0.0311
    assert spread_verdict(stats).startswith("the top-2 difference 0.012 is smaller than the seed sd 0.031: not a finding")
    assert spread_verdict(stats[:1]) is None


# ----------------------------------------------------------------- leaderboard and winner
def test_leaderboard_seed_columns_hold_the_mean_and_sd_of_the_recorded_values(tmp_path: Path) -> None:
    records = [_record("t1", 0.90), _record("t2", 0.85), _record("t3", 0.70), _record("t4", 0.1, DIVERGED)]
    seeds = {"t1": SeedStats("t1", (0, 1, 2), (0.90, 0.70, 0.74)), "t2": SeedStats("t2", (0, 1, 2), (0.85, 0.83, 0.84))}
    header, _ = leaderboard_rows(records)
    assert "val_acc_mean" not in header and "seeds" not in header  # no re-runs: no empty columns
    write_leaderboard(records, tmp_path, seeds=seeds, notes=[spread_verdict(list(seeds.values()))])
    rows = {r["trial_id"]: r for r in csv.DictReader((tmp_path / "leaderboard.csv").open())}
    assert rows["t1"]["val_acc_mean"] == f"{(0.90 + 0.70 + 0.74) / 3:.4f}" and rows["t1"]["seeds"] == "3"
    sd1 = math.sqrt(((0.90 - 0.78) ** 2 + (0.70 - 0.78) ** 2 + (0.74 - 0.78) ** 2) / 2)  # 0.1058
    assert rows["t1"]["val_acc_sd"] == f"{sd1:.4f}"
    assert rows["t2"]["val_acc_mean"] == "0.8400" and rows["t2"]["val_acc_sd"] == "0.0100"
    assert rows["t3"]["val_acc_mean"] == rows["t3"]["seeds"] == ""
    md = (tmp_path / "leaderboard.md").read_text()
    # t2's mean .84 leads t1's .78 by .06, less than t1's sd .106
    assert "the top-2 difference 0.060 is smaller than the seed sd 0.106: not a finding" in md
    # the winner is the best seed mean (t2), not the best single run (t1)
    assert winner(records, seeds).trial_id == "t2"
    assert winner(records, None).trial_id == winner(records, {}).trial_id == "t1"


def test_the_top_rankable_trials_are_rerun_with_the_next_seeds() -> None:
    records = [_record("low", 0.5), _record("top", 0.9, seed=7), _record("crash", 0.99, DIVERGED),
               _record("second", 0.8, PRUNED, epochs=2)]
    pairs = rerun_plan(records, top=2, seeds=2)
    assert [(r.trial_id, c["seed"]) for r, c in pairs] == [("top", 8), ("top", 9), ("second", 1), ("second", 2)]
    assert all(c["amp"] == "auto" and c["workers"] == "auto" and c["lr"] == 0.01 for _, c in pairs)
    stops = StopAtEpoch({config_key(c): r.epochs_run for r, c in pairs})
    second = pairs[2][1]
    assert not stops("x", {"config": second, "epoch": 1}) and stops("x", {"config": second, "epoch": 2})
    assert not stops("x", {"config": pairs[0][1], "epoch": 2})  # the completed trial runs all 3 epochs
    # values: the original's first, a diverged re-run counts nothing
    runs = [_Run(0.8), _Run(0.7), _Run(0.6), _Run(float("nan"), diverged=True)]
    stats = seed_stats(pairs, runs)
    assert stats["top"].seeds == (7, 8, 9) and stats["top"].values == (0.9, 0.8, 0.7)
    assert stats["second"].seeds == (0, 1) and stats["second"].values == (0.8, 0.6)


class _Run:
    def __init__(self, acc: float, diverged: bool = False) -> None:
        self.best_val_acc, self.diverged, self.status = acc, diverged, "TERMINATED"


def test_the_fixed_searcher_hands_each_config_once_and_survives_a_restore(tmp_path: Path) -> None:
    searcher = FixedConfigs([{"seed": 1}, {"seed": 2}])
    assert searcher.suggest("a") == {"seed": 1}
    searcher.save(str(tmp_path / "s.pkl"))
    again = pickle.loads(pickle.dumps(FixedConfigs([])))
    again.restore(str(tmp_path / "s.pkl"))
    assert again.suggest("b") == {"seed": 2} and again.suggest("c") == FixedConfigs.FINISHED


# ----------------------------------------------------------------- options
def test_rerun_defaults_follow_the_number_of_trials() -> None:
    base = {"space": "gholm", "name": "x", "storage": "/tmp/nowhere"}
    demo, _ = resolve_plan(dict(base), load_space("gholm"), gpus=0, cpus=2)
    assert (demo.rerun_top, demo.final_fit, demo.final_seeds, demo.rerun_seeds) == (0, "none", 1, 2)
    full, _ = resolve_plan({**base, "data": "synthetic"}, load_space("gholm"), gpus=1, cpus=16)
    assert (full.rerun_top, full.final_fit) == (3, "full")  # 32 trials
    few, _ = resolve_plan({**base, "num_samples": 5}, load_space("gholm"), gpus=1, cpus=16)
    assert few.rerun_top == 0


def test_final_seeds_without_a_final_fit_is_refused_before_ray(tmp_path: Path) -> None:
    line = _one_error_line(_no_ray_cli(["--space", "gholm", "--storage", str(tmp_path), "--final-seeds", "2"],
                                       tmp_path))
    assert line.startswith("error: --final-seeds 2 needs --final-fit full")


def test_a_rerun_winner_needs_its_checkpoint_when_it_is_tested_directly(tmp_path: Path) -> None:
    line = _one_error_line(_no_ray_cli(["--space", "gholm", "--storage", str(tmp_path), "--rerun-top", "4",
                                        "--keep-checkpoints", "3"], tmp_path))
    assert line.startswith("error: --rerun-top 4 may choose a winner whose checkpoint is not kept")


def test_reproduce_asks_for_a_final_fit_unless_told_otherwise() -> None:
    import argparse

    from search.reproduce import reproduce_args, reproduce_plan

    assert reproduce_plan("gholm", "dogs")["final_fit"] == "full"
    base = {"reproduce": "gholm", "data": "dogs", "set": [], "space": None, "num_samples": None, "scheduler": None,
            "max_epochs": None, "grace_period": None}
    assert reproduce_args(argparse.Namespace(**base, final_fit=None)).final_fit == "full"
    assert reproduce_args(argparse.Namespace(**base, final_fit="none")).final_fit == "none"


def test_the_disk_estimate_counts_the_runs_after_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.disk
    from search.driver import check_disk

    needs: list[int] = []
    monkeypatch.setattr(search.disk, "check_free_space", lambda folder, need: needs.append(need) or "ok")
    base = {"space": "gholm", "name": "x", "storage": str(tmp_path)}
    plain, space = resolve_plan(dict(base), load_space("gholm"), gpus=0, cpus=2)
    more, _ = resolve_plan({**base, "final_fit": "full", "final_seeds": 2, "rerun_top": 2, "rerun_seeds": 3},
                           load_space("gholm"), gpus=0, cpus=2)
    assert (plain.fixed_runs, more.fixed_runs) == (0, 2 * 3 + 2)
    check_disk(plain, space)
    check_disk(more, space)
    largest = max(search.disk.checkpoint_bytes(dict(c)) for c in space.first)  # one checkpoint of the largest config
    assert needs[1] - needs[0] == 8 * largest > 0
