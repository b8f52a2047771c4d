"""Bad input reaches the user as exit 2 and one report, before Ray starts; a
user's own method plugs in without touching the repository. Real CLI processes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_cli import CLI, ENV, NO_RAY, TINY
from tests.test_data_preflight import _broken_cub
from tests.test_methods_contract import PLUGIN

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, tripwire: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    head = [sys.executable, "-c", NO_RAY] if tripwire else [sys.executable, CLI]
    return subprocess.run(head + args, capture_output=True, text=True, cwd=cwd, env=env or ENV, timeout=600)


@pytest.mark.parametrize("setting, key, rule, dry_run", [("mu=-1", "mu", "> 0", False), ("mu=-1", "mu", "> 0", True),
                                                          ("tau=0", "tau", "> 0", True),
                                                          ("theta_low=3", "theta_low", "theta_high", False),
                                                          ("mu=abc", "mu", "number", True)])
def test_an_impossible_knob_value_exits_2_before_ray(tmp_path: Path, setting: str, key: str, rule: str,
                                                     dry_run: bool) -> None:
    done = _run(["--space", "gholm", "--set", setting, "--storage", str(tmp_path / "r")] + ["--dry-run"] * dry_run,
                tmp_path)
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    assert "RAY WAS STARTED" not in done.stderr and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and key in line and rule in line and "Fix: " in line, line
    assert not (tmp_path / "r").exists()  # nothing written


def _cub_space(tmp_path: Path, root: Path, **fixed: object) -> Path:
    space = {**TINY, "fixed": {**TINY["fixed"], "data": "cub", "data_root": str(root),
                               "batch_size": 4, **fixed}}
    path = tmp_path / "cub_tiny.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_a_folder_with_truncated_empty_and_missing_files_exits_2_naming_all(tmp_path: Path) -> None:
    root = tmp_path / "CUB"
    base, bad = _broken_cub(root)
    env = {**ENV, "FGVC_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--space", str(_cub_space(tmp_path, root)), "--data", "cub", "--data-root", str(root),
            "--storage", str(tmp_path / "r"), "--num-samples", "1", "--max-epochs", "1", "--wandb", "off"]
    start = time.time()
    done = _run(args, tmp_path, env=env)
    assert time.time() - start < 120
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    assert "RAY WAS STARTED" not in done.stderr and "Traceback" not in done.stderr
    for path, reason in bad.items():
        assert f"{path}: {reason}" in done.stderr, (path, done.stderr)
    assert "bad_image_policy=skip" in done.stderr

    # with skip the search runs for real and its summary names the skipped files
    done = _run(args + ["--set", "bad_image_policy=skip", "--name", "skipping", "--no-test"], tmp_path,
                tripwire=False, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = [line for line in done.stdout.splitlines() if line.startswith("data: skipped 3 files")]
    assert len(summary) == 2, done.stdout[-3000:]  # before the search and in the end summary
    for path, reason in bad.items():
        assert f"{Path(path).relative_to(root)} ({reason})" in summary[-1]
    assert (tmp_path / "r" / "skipping" / "leaderboard.csv").is_file()


def test_a_new_method_from_a_plugin_file_runs_in_a_real_search(tmp_path: Path) -> None:
    """Adding a method = one Python file + one space file, no edit in the repository."""
    plugin = tmp_path / "my_methods.py"
    plugin.write_text(PLUGIN.format(name="twohead"))  # the contract tests' two-head method
    space = {**TINY, "fixed": {**TINY["fixed"], "method": "twohead", "epochs": 1},
             "params": {"alpha": {"type": "uniform", "low": 0.1, "high": 0.9}},
             "first": [{"alpha": 0.5}]}
    space_file = tmp_path / "twohead.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    env = {k: v for k, v in ENV.items() if k != "FGVC_PLUGINS"}
    args = ["--plugin", str(plugin), "--space", str(space_file), "--storage", str(tmp_path / "r"), "--name", "two",
            "--num-samples", "2", "--max-epochs", "1", "--wandb", "off"]
    dry = _run(args + ["--dry-run"], tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "twohead" in dry.stdout and "alpha" in dry.stdout
    # an impossible value of the plugin's knob is refused like a built-in one
    bad = _run(args + ["--dry-run", "--set", "alpha=2"], tmp_path, env=env)
    assert bad.returncode == 2 and "alpha" in bad.stderr and "Traceback" not in bad.stderr

    done = _run(args, tmp_path, tripwire=False, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "r" / "two" / "leaderboard.csv").open()))
    assert len(rows) == 2 and {r["method"] for r in rows} == {"twohead"}
    assert {r["status"] for r in rows} == {"completed"}
    assert 0.1 <= min(float(r["alpha"]) for r in rows) <= max(float(r["alpha"]) for r in rows) <= 0.9
    best = yaml.safe_load((tmp_path / "r" / "two" / "best_config.yaml").read_text())
    assert best["method"] == "twohead" and "alpha" in best
