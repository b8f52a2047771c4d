"""Disk use is bounded: the estimate matches a real checkpoint, a full disk is
refused before anything starts, and a real search keeps full checkpoints only
for its top trials while --resume still works."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.disk import STATE_FILE, check_free_space, checkpoint_bytes, estimate_disk_bytes, free_bytes
from tests.test_cli import CLI, ENV, TINY

CFG = {"method": "baseline", "backbone": "test_convnext", "data": "synthetic", "synthetic_classes": 4,
       "synthetic_per_class": 12, "synthetic_image_size": 48, "img_size": 32, "resize_size": 40, "batch_size": 8,
       "epochs": 1, "max_train_batches": 1, "max_eval_batches": 1, "device": "cpu"}


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_the_estimate_matches_a_checkpoint_written_by_the_loop(tmp_path: Path, opt: str) -> None:
    from fgmodels.engine import fit

    fit({**CFG, "opt": opt}, tmp_path, progress=False)
    written = (tmp_path / "checkpoint" / STATE_FILE).stat().st_size
    estimate = checkpoint_bytes({**CFG, "opt": opt}, num_classes=4)
    assert 0.85 * written <= estimate <= 1.15 * written, (estimate, written)
    # more concurrent or kept trials need proportionally more room
    assert estimate_disk_bytes([CFG], concurrent=2, keep=3, num_classes=4) == checkpoint_bytes(CFG, 4) * 2 * 5


def test_a_storage_without_room_is_refused(tmp_path: Path) -> None:
    free = free_bytes(str(tmp_path / "not" / "yet"))
    assert "GiB free" in check_free_space(str(tmp_path), need=1)
    with pytest.raises(ValueError, match="Fix: free space"):
        check_free_space(str(tmp_path), need=free * 2)


def _states(exp: Path) -> dict[str, list[int]]:
    return {d.name[len("trial_"):]: sorted(p.stat().st_size for p in d.glob(f"checkpoint_*/{STATE_FILE}"))
            for d in exp.glob("trial_*") if d.is_dir() and d.name != "trial_starts"}


@pytest.mark.slow
def test_a_real_search_keeps_full_checkpoints_only_for_its_top_trials(tmp_path: Path) -> None:
    # lr from "learns nothing" to "learns": ASHA has something to cut at its rungs
    space = {**TINY, "fixed": {**TINY["fixed"], "synthetic_per_class": 30, "max_eval_batches": None},
             "params": {"lr": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2}},
             "first": [{"lr": 1.0e-6}, {"lr": 5.0e-3}]}
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    # --set keeps the space's small synthetic set (the CPU demo's defaults would enlarge it)
    args = [sys.executable, CLI, "--space", str(space_file), "--storage", str(tmp_path / "r"), "--name", "disk",
            "--num-samples", "6", "--max-epochs", "4", "--grace-period", "1", "--reduction-factor", "2",
            "--max-concurrent", "2", "--keep-checkpoints", "2", "--wandb", "off",
            "--set", "synthetic_per_class=30", "--set", "val_fraction=0.2"]
    dry = subprocess.run(args + ["--dry-run", "--name", "dry"], capture_output=True, text=True, env=ENV, timeout=300)
    assert dry.returncode == 0 and "GiB of checkpoints at most" in dry.stdout, dry.stderr[-2000:]
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "r" / "disk"
    rows = list(csv.DictReader((exp / "leaderboard.csv").open()))
    assert len(rows) == 6 and any(r["status"] == "pruned" for r in rows), rows
    states = _states(exp)
    kept = {t for t, sizes in states.items() if sizes}
    ranked = [r["trial_id"] for r in rows]  # best first
    assert kept == set(ranked[:2]), (kept, ranked)
    one = checkpoint_bytes({**space["fixed"], "lr": 1e-3}, num_classes=4)
    for trial in kept:  # the best and the latest checkpoint at most, each a full state
        assert 1 <= len(states[trial]) <= 2 and all(0.85 * one <= s <= 1.15 * one for s in states[trial])
    for trial in set(states) - kept:  # the rest keep their config and metrics, not their weights
        assert list((exp / f"trial_{trial}").glob("checkpoint_*/trial_config.yaml"))
    result = json.loads((exp / "test_result.json").read_text())
    assert result["trial_id"] == ranked[0]

    again = subprocess.run([sys.executable, CLI, "--resume", "--name", "disk", "--storage", str(tmp_path / "r")],
                           capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _states(exp) == states
