"""One real search per strategy (``run_search.py`` with Ray, the CPU demo's
defaults) at the benchmark's budget, to confirm the replay: its best val_acc
should fall inside the replay's distribution for the same strategy."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.strategies import Strategy

ROOT = Path(__file__).resolve().parents[1]


def live_search(strategy: Strategy, trials: int, grace: int, seed: int = 0) -> dict[str, Any]:
    """Run the search; its best val_acc, trial-epochs spent, trials and wall time."""
    with tempfile.TemporaryDirectory() as storage:
        name = "live"
        cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "gholm", "--searcher", strategy.searcher,
               "--scheduler", strategy.scheduler, "--num-samples", str(trials), "--grace-period", str(grace),
               "--seed", str(seed), "--name", name, "--storage", storage, "--wandb", "off", "--no-test"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=storage)
        wall = time.perf_counter() - start
        board = Path(storage) / name / "leaderboard.csv"
        if proc.returncode != 0 or not board.exists():
            raise RuntimeError(f"live search {strategy.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                               f"\n{proc.stderr[-3000:]}")
        rows = list(csv.DictReader(board.open()))
    accs = [float(r["best_val_acc"]) for r in rows if r["best_val_acc"]]
    return {"strategy": strategy.name, "seed": seed, "trials": len(rows),
            "grace": grace if strategy.scheduler == "asha" else "",
            "trial_epochs": sum(int(r["epochs_run"]) for r in rows), "best_val_acc": round(max(accs), 4),
            "wall_s": round(wall)}
