"""The search command as users run it (a subprocess), and its exit statuses:
2 with one line and no traceback for a bad option, before Ray starts; 1 when
every trial failed; 130 after Ctrl-C, with an accurate summary and the exact
command that continues the search; 0 when that command finishes it. Also the
installed ``fgvc-search`` command is the same CLI."""
from __future__ import annotations

import csv
import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLI = str(REPO / "run_search.py")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
       "FGVC_HOOKS": "tests.fault_injection:HOOK"}
# The real CLI, with ray.init replaced by a tripwire: proves that nothing started.
NO_RAY = ("import runpy, sys, ray\n"
          "def tripwire(*args, **kwargs):\n"
          "    sys.stderr.write('RAY WAS STARTED\\n'); sys.exit(99)\n"
          "ray.init = tripwire\n"
          f"sys.argv[0] = {CLI!r}\n"
          f"runpy.run_path({CLI!r}, run_name='__main__')\n")
TINY = {"description": "tiny baseline space for CLI tests",
        "fixed": {"method": "baseline", "backbone": "test_convnext", "pretrained": False, "opt": "adamw",
                  "sched": "constant", "batch_size": 8, "synthetic_classes": 4, "synthetic_per_class": 12,
                  "synthetic_image_size": 48, "img_size": 32, "resize_size": 40, "max_train_batches": 2,
                  "max_eval_batches": 1, "device": "cpu"},
        "params": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}}


def _no_ray_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_RAY, *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=300)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert "Fix: " in lines[0]
    return lines[0]


def _space(tmp_path: Path, **fixed: object) -> Path:
    space = {**TINY, "fixed": {**TINY["fixed"], **fixed}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


# ----------------------------------------------------------------- exit 2: nothing starts
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_storage_exits_2_before_ray_starts(tmp_path: Path) -> None:
    line = _one_error_line(_no_ray_cli(["--space", "gholm", "--storage", "/proc/x", "--name", "n"], tmp_path))
    assert line.startswith("error: cannot create the results folder /proc/x (--storage): ")
    (tmp_path / "afile").write_text("x")
    line = _one_error_line(_no_ray_cli(["--space", "gholm", "--dry-run", "--storage", str(tmp_path / "afile" / "sub")],
                                       tmp_path))
    assert f"cannot create the results folder {tmp_path / 'afile' / 'sub'} (--storage): " \
           f"{tmp_path / 'afile'} is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_unknown_space_is_named_once(tmp_path: Path) -> None:
    line = _one_error_line(_no_ray_cli(["--space", "does-not-exist"], tmp_path))
    assert line.startswith("error: --space 'does-not-exist': ")
    assert len(re.findall(r"--space '", line)) == 1, line


# ----------------------------------------------------------------- exit 1: the search ran, nothing to trust
def test_a_search_whose_trials_all_fail_exits_1_with_the_reason(tmp_path: Path) -> None:
    space = _space(tmp_path, simulate_oom_above_batch=0)  # every step "runs out of memory", even at micro-batch 1
    done = subprocess.run([sys.executable, CLI, "--space", str(space), "--storage", str(tmp_path / "res"),
                           "--name", "allfail", "--num-samples", "2", "--max-epochs", "1", "--max-concurrent", "2",
                           "--max-failures", "0", "--wandb", "off", "--no-smoke"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no trial completed an epoch (2 errored), so the search has no result."), last
    assert "out of memory" in last and "Fix: " in last
    exp = tmp_path / "res" / "allfail"
    assert (exp / "leaderboard.csv").read_text().count(",errored") == 2
    assert not (exp / "test_result.json").exists()


# ----------------------------------------------------------------- exit 130: Ctrl-C, then --resume
def _epochs_reported(exp: Path) -> int:
    rows = 0
    for path in exp.glob("trial_*/result.json"):
        rows += sum("epoch" in json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


def test_ctrl_c_exits_130_with_the_state_saved_and_resume_finishes(tmp_path: Path) -> None:
    space, storage = _space(tmp_path), tmp_path / "res"
    exp, log_path = storage / "ctrlc", tmp_path / "first.log"
    cmd = [sys.executable, CLI, "--space", str(space), "--storage", str(storage), "--name", "ctrlc",
           "--num-samples", "3", "--max-epochs", "3", "--grace-period", "3", "--max-concurrent", "2",
           "--wandb", "off", "--no-smoke"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=ENV,
                                start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and " epoch 1/3 " not in log_path.read_text():
                time.sleep(0.2)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    out = log_path.read_text()
    assert code == 130, out[-4000:]
    started = len(list(exp.glob("trial_*/params.json")))  # one per trial Ray created
    head = re.search(r"search interrupted \(Ctrl-C\): (\d+) of 3 trial\(s\) started, (\d+) epoch\(s\) done so far", out)
    assert head, out[-3000:]
    assert (int(head.group(1)), int(head.group(2))) == (started, _epochs_reported(exp)) and int(head.group(2)) >= 1
    assert "no trial finished an epoch" not in out and not (exp / "test_result.json").exists()
    command = out.strip().splitlines()[out.strip().splitlines().index(
        "nothing was evaluated on the test split; continue the search with:") + 1].strip()
    assert command == f"python {CLI} --resume --name ctrlc --storage {storage}"

    done = subprocess.run(shlex.split(command.replace("python", sys.executable, 1)), capture_output=True, text=True,
                          cwd=tmp_path, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list(csv.DictReader((exp / "leaderboard.csv").open()))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}, rows
    assert done.stdout.count("TEST split (the only test evaluation of this search)") == 1
    result = (exp / "test_result.json").read_bytes()

    again = subprocess.run(shlex.split(command.replace("python", sys.executable, 1)), capture_output=True, text=True,
                           cwd=tmp_path, env=ENV, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "(already evaluated earlier: not recomputed)" in again.stdout  # the test split is evaluated once
    assert (exp / "test_result.json").read_bytes() == result


# ----------------------------------------------------------------- the installed command
def test_fgvc_search_is_the_same_cli() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["fgvc-search"].partition(":")
    sys.path.insert(0, str(REPO))
    import run_search

    assert getattr(importlib.import_module(module), attr) is run_search.main
    installed = Path(sys.executable).parent / "fgvc-search"
    assert installed.is_file(), (f"{installed} is missing: the environment predates [project.scripts]. "
                                 f"Fix: bash scripts/setup_env.sh (it reinstalls when pyproject.toml changes)")
    done = subprocess.run([str(installed), "--help"], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fgvc-search ") and "--plugin PATH_OR_MODULE" in done.stdout
    assert "fgvc-search --space gholm" in done.stdout  # the examples name the command that was run
