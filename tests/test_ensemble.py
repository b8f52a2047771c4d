"""--ensemble: averaged softmax and the greedy choice of members and weights
against hand computations, the choice made without the test split, the
option's checks before Ray, and a tiny real search that reports the chosen
ensemble beside the best trial, costs for every trial, the Pareto front and
the rung correlations."""
from __future__ import annotations

import csv
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from search import ensemble
from search.ensemble import accuracy, ensemble_probs, greedy_selection
from search.records import TrialRecord
from tests.test_cli import CLI, ENV, TINY, _no_ray_cli, _one_error_line

LABELS = torch.tensor([0, 1, 0, 1])
PROBS = {  # per member, per image: (p class 0, p class 1)
    "a": [[0.55, 0.45], [0.9, 0.1], [0.3, 0.7], [0.2, 0.8]],  # right on images 1, 4: 2/4
    "b": [[0.4, 0.6], [0.2, 0.8], [0.8, 0.2], [0.45, 0.55]],  # right on 2, 3, 4: 3/4
    "c": [[0.9, 0.1], [0.7, 0.3], [0.45, 0.55], [0.6, 0.4]],  # right on 1: 1/4
}


def _logits(name: str, shift: float) -> torch.Tensor:
    """Logits whose softmax is exactly PROBS[name] (log p plus any per-row constant)."""
    return torch.tensor(PROBS[name]).log() + shift


def test_ensemble_accuracy_equals_a_hand_computation() -> None:
    a, b, c = _logits("a", 3.0), _logits("b", -1.0), _logits("c", 0.5)
    assert [accuracy(x, LABELS) for x in (a, b, c)] == [0.5, 0.75, 0.25]
    # mean of a, b, c per image: (1.85, 1.15)/3 -> 0 right; (1.8, 1.2)/3 -> 0 wrong;
    # (1.55, 1.45)/3 -> 0 right; (1.25, 1.75)/3 -> 1 right
    assert torch.allclose(ensemble_probs([a, b, c]), torch.tensor(
        [[1.85, 1.15], [1.8, 1.2], [1.55, 1.45], [1.25, 1.75]]) / 3)
    assert accuracy(ensemble_probs([a, b, c]), LABELS) == 0.75
    # a and b alone: (.475, .525) wrong, (.55, .45) wrong, (.55, .45) right, (.325, .675) right
    assert accuracy(ensemble_probs([a, b]), LABELS) == 0.5
    # weights 1:3 -> (.4375, .5625) wrong, (.375, .625) right, (.675, .325) right, (.3875, .6125) right
    assert accuracy(ensemble_probs([a, b], [1.0, 3.0]), LABELS) == 0.75


def _two_class(p0: list[float]) -> torch.Tensor:
    """Logits of two classes whose softmax gives class 0 the probabilities ``p0``."""
    return torch.tensor([[p, 1.0 - p] for p in p0]).log()


# Every label is class 0 here: an image is right when the (averaged) p(class 0) is above 0.5.
@pytest.mark.parametrize("p0, counts", [
    # alone: a 3/5, b 2/5, c 1/5 -> round 1 takes a. Round 2: a+a 3/5; a+b averages .6 .675 .675 .65 .65: 5/5;
    # a+c .675 .675 .675 .425 .65: 4/5 -> b. No later round beats 5/5: a and b at 1/2 each, c left out.
    ({"a": [.9, .9, .9, .4, .4], "b": [.3, .45, .45, .9, .9], "c": [.45, .45, .45, .45, .9]}, [1, 1, 0]),
    # alone: a 3/5, b 2/5 -> a. Round 2: a+a 3/5; a+b .425 (x3, wrong) .65 (x2): 2/5 -> a again.
    # Round 3: 2a+b: 1.65/3 = .55 (x3), 1.7/3 = .567 (x2): 5/5 -> b. a weighs 2/3, b 1/3.
    ({"a": [.8, .8, .8, .4, .4], "b": [.05, .05, .05, .9, .9]}, [2, 1]),
])
def test_greedy_selection_with_replacement_equals_a_hand_computation(p0: dict[str, list[float]],
                                                                      counts: list[int]) -> None:
    labels = torch.zeros(5, dtype=torch.long)
    assert greedy_selection([_two_class(p) for p in p0.values()], labels) == counts


VAL = {"a": [.9, .9, .9, .4, .4], "b": [.3, .45, .45, .9, .9], "c": [.45, .45, .45, .45, .9]}  # the first case
TEST_LABELS = torch.tensor([0, 1, 0, 1])
TEST = {"a": [.9, .9, .2, .2], "b": [.6, .3, .6, .3]}  # a right on images 1 and 4, b on all four


def test_the_ensemble_is_chosen_on_validation_and_only_its_members_read_the_test_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[str, str]] = []

    def fake_split_logits(record: TrialRecord, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        reads.append((record.trial_id, split))
        if split == "val":
            return _two_class(VAL[record.trial_id]), torch.zeros(5, dtype=torch.long)
        return _two_class(TEST[record.trial_id]), TEST_LABELS  # c has no test logits: reading them fails

    monkeypatch.setattr(ensemble, "split_logits", fake_split_logits)
    members = [TrialRecord(trial_id=t, method="baseline", config={}, knobs={}, curve=[], status="completed")
               for t in ("a", "b", "c")]
    report, text = ensemble.write_val_report(members, tmp_path)
    assert reads == [("a", "val"), ("b", "val"), ("c", "val")]  # choosing read no test image
    assert report["weights"] == [0.5, 0.5, 0.0] and [m["trial_id"] for m in report["members"]] == ["a", "b"]
    assert report["ensemble_val_acc"] == 1.0 and report["best_member_val_acc"] == 0.6 and report["ensemble_better"]
    assert json.loads((tmp_path / "ensemble.json").read_text()) == report
    assert "(a x0.50, b x0.50): val_acc 1.0000" in text

    reads.clear()
    best, entry = ensemble.on_test_split(members, report["weights"])
    assert reads == [("a", "test"), ("b", "test")]  # c, not chosen, is never evaluated
    # a+b averaged: (.75, .25) right, (.6, .4) wrong (label 1), (.4, .6) wrong (label 0), (.25, .75) right
    assert entry["test_acc"] == 0.5 and entry["k"] == 2 and [m["weight"] for m in entry["members"]] == [0.5, 0.5]
    assert best["acc"] == 0.5 and best["n"] == 4
    assert best["loss"] == pytest.approx(-(math.log(.9) + math.log(.1) + math.log(.2) + math.log(.8)) / 4)


@pytest.mark.parametrize("extra", [["--ensemble", "4"], ["--ensemble", "1"]])
def test_an_ensemble_without_kept_members_is_refused_before_ray(tmp_path: Path, extra: list[str]) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY, sort_keys=False))
    line = _one_error_line(_no_ray_cli(["--space", str(space), "--storage", str(tmp_path), *extra], tmp_path))
    assert line.startswith("error: --ensemble") and "--keep-checkpoints" in line


def test_a_bad_objective_is_refused_before_ray(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY, sort_keys=False))
    line = _one_error_line(_no_ray_cli(["--space", str(space), "--storage", str(tmp_path), "--objective",
                                        "val_acc,speed"], tmp_path))
    assert line.startswith("error: --objective")


@pytest.mark.slow
def test_a_real_search_reports_costs_front_rungs_and_its_ensemble(tmp_path: Path) -> None:
    space = {**TINY, "fixed": {**TINY["fixed"], "synthetic_per_class": 20, "max_eval_batches": None},
             "params": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
             "first": [{"lr": 5.0e-3}]}
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    # --set keeps the space's small synthetic set (the CPU demo's defaults would enlarge it)
    done = subprocess.run([sys.executable, CLI, "--space", str(space_file), "--storage", str(tmp_path / "r"),
                           "--name", "ens", "--num-samples", "4", "--max-epochs", "3", "--grace-period", "1",
                           "--max-concurrent", "2", "--keep-checkpoints", "2", "--ensemble", "2",
                           "--objective", "val_acc,latency", "--wandb", "off",
                           "--set", "synthetic_per_class=20", "--set", "val_fraction=0.2"],
                          capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "r" / "ens"
    rows = list(csv.DictReader((exp / "leaderboard.csv").open()))
    assert len(rows) == 4
    with next(exp.glob("searcher-state-*.pkl")).open("rb") as fh:  # what Ray's OptunaSearch saved
        study = pickle.load(fh)["_ot_study"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]  # val_acc up, ms per image down
    told = [t.values for t in study.trials if t.state.name == "COMPLETE"]
    assert len(told) == 4 and all(len(v) == 2 and v[1] > 0 for v in told), told
    for row in rows:  # every trial ran an epoch: every one measured its cost
        assert float(row["cost_ms_per_image"]) > 0 and float(row["cost_params_m"]) > 0, row
        assert float(row["cost_gflops"]) > 0 and row["pareto"] in ("yes", "no"), row
    top = max(float(r["best_val_acc"]) for r in rows)  # the cheapest of the most accurate is never dominated
    assert any(r["pareto"] == "yes" for r in rows if float(r["best_val_acc"]) == top), rows
    for name in ("pareto.png", "rung_correlation.png"):
        assert (exp / name).stat().st_size > 0
    rungs = json.loads((exp / "rung_correlation.json").read_text())
    assert [r["epoch"] for r in rungs] == [1, 2, 3]
    report = json.loads((exp / "ensemble.json").read_text())
    assert [m["trial_id"] for m in report["candidates"]] == [rows[0]["trial_id"], rows[1]["trial_id"]]
    assert report["best_member_val_acc"] == report["candidates"][0]["acc"]
    assert len(report["weights"]) == 2 and sum(report["weights"]) == pytest.approx(1.0)
    assert [m["trial_id"] for m in report["members"]] == [c["trial_id"] for c, w in
                                                          zip(report["candidates"], report["weights"]) if w > 0]
    assert report["ensemble_val_acc"] >= report["best_member_val_acc"]  # greedy never ends below its first pick
    assert report["ensemble_better"] == (report["ensemble_val_acc"] > report["best_member_val_acc"])
    assert "ensemble chosen on validation from the top 2 trials" in done.stdout
    result = json.loads((exp / "test_result.json").read_text())
    assert result["trial_id"] == rows[0]["trial_id"] and result["ensemble"]["k"] == len(report["members"])
    assert result["test_acc"] == result["ensemble"]["best_trial_test_acc"]  # one pass per model
    assert 0.0 <= result["ensemble"]["test_acc"] <= 1.0 and not math.isnan(result["test_loss"])
    print(json.dumps({"ensemble": report, "test": result}, indent=1))
