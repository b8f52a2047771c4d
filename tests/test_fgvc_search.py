"""One real search over the cross-method `fgvc` space: the paper point of every
method is evaluated first, so one small search runs each method's space
through Ray + Optuna + ASHA, and the results are grouped by method."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.spaces import load_space

REPO = Path(__file__).resolve().parent.parent
METHODS = {"baseline", "gholm", "atcnn", "racnn", "lgam", "clca"}


@pytest.mark.parametrize("space", sorted(METHODS | {"fgvc"}))
def test_every_space_dry_runs(space: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "run_search.py"), "--space", space, "--dry-run",
                           "--storage", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dry run: nothing started" in done.stdout and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_fgvc_search_runs_every_method(tmp_path: Path) -> None:
    space = load_space("fgvc")
    assert set(space.methods) == METHODS and len(space.first) == len(METHODS)
    storage = tmp_path / "res"
    cmd = [sys.executable, str(REPO / "run_search.py"), "--space", "fgvc", "--storage", str(storage),
           "--name", "all", "--num-samples", str(len(METHODS)), "--max-epochs", "2", "--grace-period", "1",
           "--max-concurrent", "2", "--wandb", "off", "--seed", "0",
           "--set", "max_train_batches=2", "--set", "synthetic_classes=4", "--set", "synthetic_per_class=40"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    exp = storage / "all"
    rows = list(csv.DictReader(open(exp / "leaderboard.csv")))
    assert {r["method"] for r in rows} == METHODS, rows
    assert all(r["status"] in ("completed", "pruned") for r in rows), rows
    # grouped by method: one summary row per method, in the CSV, the Markdown and the terminal
    by_method = list(csv.DictReader(open(exp / "leaderboard_by_method.csv")))
    assert {r["method"] for r in by_method} == METHODS
    assert [float(r["best_val_acc"]) for r in by_method] == sorted(
        (float(r["best_val_acc"]) for r in by_method), reverse=True)
    for r in by_method:
        mine = [float(x["best_val_acc"]) for x in rows if x["method"] == r["method"]]
        assert float(r["best_val_acc"]) == pytest.approx(max(mine), abs=1e-4)
    assert "## By method" in (exp / "leaderboard.md").read_text()
    best = yaml.safe_load((exp / "best_config.yaml").read_text())
    assert best["method"] in METHODS
    for png in ("learning_curves.png", "knobs_vs_accuracy.png", "param_importance.png"):
        assert (exp / png).stat().st_size > 10_000
