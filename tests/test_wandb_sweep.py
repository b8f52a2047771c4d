"""The W&B sweep view (:mod:`search.wandb_sweep`): a search space as W&B's
sweep configuration (one method, and a union), every trial's run attached
with ``prior_runs``, the URL printed, each run's summary, and a real offline
search that prints the two later commands, the second of which runs."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from search import wandb_sweep
from search.callbacks import WandbTrialCallback
from search.records import TrialRecord
from tests.test_cli import CLI, ENV, TINY
from tests.test_searchers import plan_for

GHOLM = """\
fixed: {method: gholm, backbone: test_convnext, pretrained: false, device: cpu}
params:
  lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  mu: {type: uniform, low: 1.5, high: 2.2}
  gamma: {type: uniform, low: 0.1, high: 1.0, step: 0.3}
  batch_size: {type: int, low: 8, high: 32, step: 8}
  accum_steps: {type: int, low: 1, high: 8, log: true}
  use_drop: {type: choice, values: [true, false]}
  lr_milestones: {type: choice, values: [[10, 20], [15, 30]]}
"""
BASELINE = """\
fixed: {method: baseline, backbone: test_convnext, pretrained: false, device: cpu}
params:
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
  batch_size: {type: choice, values: [8, 64]}
  label_smoothing: {type: uniform, low: 0.0, high: 0.2}
"""
GHOLM_PARAMS = {  # W&B's sweep format, written out by hand from GHOLM
    "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2},
    "mu": {"distribution": "uniform", "min": 1.5, "max": 2.2},
    "gamma": {"distribution": "q_uniform", "min": 0.1, "max": 1.0, "q": 0.3},
    "batch_size": {"distribution": "q_uniform", "min": 8, "max": 32, "q": 8},
    "accum_steps": {"distribution": "q_log_uniform_values", "min": 1, "max": 8, "q": 1},
    "use_drop": {"values": [True, False]},
    "lr_milestones": {"values": [[10, 20], [15, 30]]},
}
URL_BASE = "https://app.example.org"  # W&B's app beside the API host of a W&B server of one's own


def _spaces(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "g.yaml").write_text(GHOLM)
    (tmp_path / "b.yaml").write_text(BASELINE)
    (tmp_path / "u.yaml").write_text("include: [b.yaml, g.yaml]\n")
    return {name: tmp_path / f"{name}.yaml" for name in ("g", "b", "u")}


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in for the W&B API at the boundary: records every ``wandb.sweep`` call."""
    import wandb

    calls: list[dict[str, Any]] = []

    def sweep(sweep: dict, entity: str | None = None, project: str | None = None,
              prior_runs: list[str] | None = None) -> str:
        calls.append({"sweep": sweep, "entity": entity, "project": project, "prior_runs": prior_runs})
        return "sw123"

    monkeypatch.setattr(wandb, "sweep", sweep)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(default_entity="me",
                                                              settings={"base_url": "https://api.example.org"}))
    for name in ("WANDB_PROJECT", "WANDB_APP_URL"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_a_one_method_space_becomes_the_sweep_configuration(tmp_path: Path) -> None:
    plan, space = plan_for(_spaces(tmp_path)["g"], tmp_path, searcher="tpe", name="mysearch")
    config = wandb_sweep.sweep_config(space, plan)
    assert config["parameters"] == {"method": {"value": "gholm"}, **GHOLM_PARAMS}
    assert config["metric"] == {"name": "val_acc", "goal": "maximize"}
    assert config["method"] == "bayes" and config["name"] == "mysearch"
    for searcher, method in (("random", "random"), ("qmc", "bayes")):
        plan, space = plan_for(_spaces(tmp_path)["g"], tmp_path, searcher=searcher)
        assert wandb_sweep.sweep_config(space, plan)["method"] == method
    grid = tmp_path / "grid.yaml"  # W&B's grid lists values only: a stepped range makes it random
    for params, method in (("{lr: {type: choice, values: [0.001, 0.01]}}", "grid"),
                           ("{label_smoothing: {type: uniform, low: 0.0, high: 0.2, step: 0.1}}", "random")):
        grid.write_text(f"fixed: {{method: baseline, backbone: test_convnext}}\nparams: {params}\n")
        plan, space = plan_for(grid, tmp_path, searcher="grid", num_samples=2)
        assert wandb_sweep.sweep_config(space, plan)["method"] == method


def test_a_union_space_becomes_one_sweep_configuration_over_its_methods(tmp_path: Path) -> None:
    plan, space = plan_for(_spaces(tmp_path)["u"], tmp_path, searcher="tpe")
    params = wandb_sweep.sweep_config(space, plan)["parameters"]
    assert params == {
        "method": {"values": ["baseline", "gholm"]},
        # both methods search lr: the range holding both (1e-3..1e-1 and 1e-4..1e-2)
        "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1},
        # baseline's choices, then gholm's grid 8, 16, 24, 32 that baseline lacks
        "batch_size": {"values": [8, 64, 16, 24, 32]},
        "label_smoothing": {"distribution": "uniform", "min": 0.0, "max": 0.2},
        **{k: v for k, v in GHOLM_PARAMS.items() if k not in ("lr", "batch_size")},
    }


def _record(trial_id: str, status: str, epochs: int) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, method="gholm", config={}, knobs={}, curve=[], status=status,
                       epochs_run=epochs)


RECORDS = [_record("a1", "completed", 2), _record("b2", "pruned", 1), _record("c3", "diverged", 0),
           _record("d4", "errored", 0), _record("e5", "errored", 1)]  # d4 failed before its first report: no run


def test_an_online_search_creates_its_sweep_with_every_trial_run_and_prints_the_url(
        tmp_path: Path, fake_wandb: list[dict[str, Any]], capsys: pytest.CaptureFixture) -> None:
    plan, space = plan_for(_spaces(tmp_path)["g"], tmp_path, searcher="tpe", wandb="online", name="s1")
    plan.local_dir.mkdir(parents=True)
    wandb_sweep.after_search(plan, space, RECORDS)
    assert fake_wandb == [{"sweep": wandb_sweep.sweep_config(space, plan), "entity": None, "project": "fgvc-search",
                           "prior_runs": ["s1-a1", "s1-b2", "s1-c3", "s1-e5"]}]
    url = f"{URL_BASE}/me/fgvc-search/sweeps/sw123"
    assert url in capsys.readouterr().out
    saved = json.loads((plan.local_dir / "wandb_sweep.json").read_text())
    assert saved["url"] == url and saved["runs"] == ["s1-a1", "s1-b2", "s1-c3", "s1-e5"]

    wandb_sweep.after_search(plan, space, RECORDS, interrupted=True)  # made when the search ends, not before
    assert len(fake_wandb) == 1


def test_a_failed_sweep_call_names_the_retry_and_never_fails_the_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import wandb

    def no_network(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "sweep", no_network)
    plan, space = plan_for(_spaces(tmp_path)["g"], tmp_path, wandb="online", name="s2")
    wandb_sweep.after_search(plan, space, RECORDS)
    err = capsys.readouterr().err
    assert "unreachable" in err and f"Fix: retry with python -m search.wandb_sweep {plan.experiment_path}" in err


class FakeRun:
    """What the callback uses of a W&B run; ``log`` updates the summary to each
    key's last value, as W&B does."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.finished: int | None = None

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, row: dict[str, Any]) -> None:
        self.summary.update(row)

    def finish(self, exit_code: int = 0) -> None:
        self.finished = exit_code


def test_each_trial_run_summary_carries_what_the_sweep_page_shows(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    runs: dict[str, FakeRun] = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.setdefault(kw["id"], FakeRun()))
    callback = WandbTrialCallback("offline", "g", str(tmp_path))
    cfg = json.dumps({"method": "gholm", "epochs": 2, "lr": 0.01})
    cost = {"cost_ms_per_image": 3.5, "cost_gflops": 0.2, "cost_params_m": 1.1}
    trial = {t: SimpleNamespace(trial_id=t) for t in ("full", "short", "nan", "crash", "open")}
    report = lambda t, r: callback.on_trial_result(0, [], trial[t], r)  # noqa: E731
    report("full", {"epoch": 1, "val_acc": 0.5, "best_val_acc": 0.5, "trial_config": cfg, **cost})
    report("full", {"epoch": 2, "val_acc": 0.4, "best_val_acc": 0.5, **cost})
    report("short", {"epoch": 1, "val_acc": 0.3, "best_val_acc": 0.3, "trial_config": cfg})
    report("nan", {"epoch": 1, "val_acc": 0.2, "best_val_acc": 0.2, "trial_config": cfg})
    report("nan", {"diverged": True, "diverged_epoch": 2})
    report("crash", {"epoch": 1, "val_acc": 0.1, "best_val_acc": 0.1, "trial_config": cfg})
    report("open", {"epoch": 1, "val_acc": 0.6, "best_val_acc": 0.6, "trial_config": cfg})
    for t in ("full", "short", "nan"):
        callback.on_trial_complete(0, [], trial[t])
    callback.on_trial_error(0, [], trial["crash"])
    callback.on_experiment_end([])
    summary = {t: runs[f"g-{t}"].summary for t in trial}
    assert {t: s["status"] for t, s in summary.items()} == {
        "full": "completed", "short": "pruned", "nan": "diverged", "crash": "errored", "open": "unfinished"}
    assert {t: s["epochs_run"] for t, s in summary.items()} == {"full": 2, "short": 1, "nan": 1, "crash": 1, "open": 1}
    assert summary["full"]["best_val_acc"] == 0.5 and summary["full"]["cost_gflops"] == 0.2
    assert runs["g-crash"].finished == 1 and runs["g-full"].finished == 0


FAKE_WANDB_MODULE = """\
import json, os, runpy, sys, types, wandb
def sweep(sweep, entity=None, project=None, prior_runs=None):
    with open(os.environ["SWEEP_CALLS"], "a") as fh:
        fh.write(json.dumps({"sweep": sweep, "entity": entity, "project": project, "prior_runs": prior_runs}) + "\\n")
    return "sw123"
wandb.sweep = sweep
wandb.Api = lambda: types.SimpleNamespace(default_entity="me", settings={"base_url": "https://api.example.org"})
sys.argv[0] = "wandb_sweep"
runpy.run_module("search.wandb_sweep", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_real_offline_search_prints_both_commands_and_the_second_creates_the_sweep(tmp_path: Path) -> None:
    from tests.wandb_offline import read_runs

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY, sort_keys=False))
    env = {k: v for k, v in ENV.items() if k not in ("WANDB_PROJECT", "WANDB_APP_URL")}
    done = subprocess.run([sys.executable, CLI, "--space", str(space_file), "--storage", str(tmp_path / "r"),
                           "--name", "off", "--num-samples", "2", "--max-epochs", "1", "--max-concurrent", "2",
                           "--wandb", "offline", "--no-smoke", "--no-test"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "r" / "off"
    lines = [ln.strip() for ln in done.stdout.splitlines()]
    assert f"wandb sync {exp}/wandb/offline-run-*" in lines, done.stdout[-2000:]
    sweep_line = f"python -m search.wandb_sweep {exp}"
    assert sweep_line in lines, done.stdout[-2000:]

    runs = read_runs(exp / "wandb")
    assert len(runs) == 2
    for run in runs:  # what the sweep page shows of each trial
        assert run.summary["status"] == "completed" and run.summary["epochs_run"] == 1, run.summary
        assert run.summary["best_val_acc"] == run.history[-1]["best_val_acc"] and run.summary["cost_gflops"] > 0

    calls = tmp_path / "calls.jsonl"
    argv = shlex.split(sweep_line)[3:]  # after "python -m search.wandb_sweep"
    made = subprocess.run([sys.executable, "-c", FAKE_WANDB_MODULE, *argv], capture_output=True, text=True,
                          cwd=Path(CLI).parent, env={**env, "SWEEP_CALLS": str(calls)}, timeout=300)  # as printed: from the repo
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert sorted(call["prior_runs"]) == sorted(run.run_id for run in runs)
    assert call["project"] == "fgvc-search" and call["entity"] is None
    assert call["sweep"]["parameters"] == {"method": {"value": "baseline"}, "lr": {
        "distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}}
    assert f"{URL_BASE}/me/fgvc-search/sweeps/sw123" in made.stdout
    assert re.search(r"2 trial runs", made.stdout) and (exp / "wandb_sweep.json").is_file()


def test_the_module_refuses_a_folder_without_a_search(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "search.wandb_sweep", str(tmp_path)], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Fix: " in done.stderr, done.stderr
