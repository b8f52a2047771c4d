"""--ensemble: averaged softmax against a hand computation, the option's checks
before Ray, and a tiny real search that reports the ensemble beside its best
member, costs for every trial, the Pareto front and the rung correlations."""
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

from search.ensemble import accuracy, ensemble_probs
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
    assert [m["trial_id"] for m in report["members"]] == [rows[0]["trial_id"], rows[1]["trial_id"]]
    assert report["best_member_val_acc"] == report["members"][0]["acc"]
    assert report["ensemble_better"] == (report["ensemble_val_acc"] > report["best_member_val_acc"])
    assert "ensemble of the top 2 trials: val_acc" in done.stdout
    result = json.loads((exp / "test_result.json").read_text())
    assert result["trial_id"] == rows[0]["trial_id"] and result["ensemble"]["k"] == 2
    assert result["test_acc"] == result["ensemble"]["members"][0]["acc"]  # one pass per model
    assert 0.0 <= result["ensemble"]["test_acc"] <= 1.0 and not math.isnan(result["test_loss"])
    print(json.dumps({"ensemble": report, "test": result}, indent=1))
