"""Tests of the search driver: plan validation, records/leaderboard/importance
logic, and ONE real end-to-end search on synthetic data that is killed with
SIGKILL mid-search and resumed (Ray + Optuna + ASHA + W&B offline), asserting
on every artefact, on the scheduler's pruning contract and on the single
test-split evaluation. The end-to-end test is the slow one (~2-4 min on 2 cores).

The test space drives the fault-injection test hook per trial (a NaN loss, a
simulated out-of-memory error): in this process through the ``fault_injection``
fixture, in the CLI subprocess and its Ray workers through ``FGVC_HOOKS``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import run_search  # noqa: E402
from search.plan import CPU_OVERRIDES, OptionError, resolve_plan  # noqa: E402
from search.records import TrialRecord, curve_from_rows, make_record, status_of  # noqa: E402
from search.results import best_record, rank, write_leaderboard  # noqa: E402
from search.spaces import load_space  # noqa: E402

TEST_SPACE = {
    "description": "tiny gholm space for tests (one trial diverges, one runs out of memory)",
    "fixed": {"method": "gholm", "backbone": "test_convnext", "pretrained": False, "opt": "adamw",
              "sched": "constant", "batch_size": 8, "synthetic_classes": 4, "synthetic_per_class": 60,
              "max_train_batches": 3, "device": "cpu"},
    "params": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 3.0e-2},
               "mu": {"type": "uniform", "low": 1.5, "high": 2.2},
               # 3 steps per epoch, 4 epochs: a value <= 12 makes a trial diverge (unless ASHA stops it first)
               "inject_nan_at_step": {"type": "int", "low": 1, "high": 60},
               # 4: every step with the micro-batch of 8 raises a (simulated) CUDA OOM
               "simulate_oom_above_batch": {"type": "choice", "values": [4, 1000]}},
    # the first point diverges at global step 1, in its first epoch; the second
    # hits out-of-memory and must go on with micro-batch 4 x 2 accumulation steps
    "first": [{"lr": 1.0e-3, "mu": 1.7, "inject_nan_at_step": 1, "simulate_oom_above_batch": 1000},
              {"lr": 3.0e-3, "mu": 1.7, "inject_nan_at_step": 60, "simulate_oom_above_batch": 4}],
}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spaces") / "tiny_gholm.yaml"
    path.write_text(yaml.safe_dump(TEST_SPACE, sort_keys=False))
    return path


# ----------------------------------------------------------------- plan / CLI
def test_cpu_defaults_make_a_small_real_search() -> None:
    space = load_space("gholm")
    plan, applied = resolve_plan({"space": "gholm", "name": "x", "storage": "/tmp/nowhere"}, space, gpus=0, cpus=2)
    # grace: --grace-period auto, 0.3 x 10 epochs
    assert (plan.num_samples, plan.max_epochs, plan.grace_period, plan.reduction_factor) == (8, 10, 3, 2.0)
    assert plan.grace_auto
    assert (plan.max_concurrent, plan.cpus_per_trial, plan.gpus_per_trial, plan.smoke) == (2, 1.0, 0.0, True)
    assert applied.fixed["backbone"] == "test_resnet"  # smoke section applied
    assert applied.fixed["epochs"] == 10 and applied.fixed["max_train_batches"] == CPU_OVERRIDES["max_train_batches"]
    assert all(cfg["epochs"] == 10 for cfg in applied.first)
    # with a GPU the same space plans a full search: no smoke, the space's own epochs
    gplan, gapplied = resolve_plan({"space": "gholm", "name": "x", "storage": "/tmp/nowhere"}, space, gpus=1, cpus=16)
    assert (gplan.smoke, gplan.gpus_per_trial, gplan.max_epochs) == (False, 1.0, 40)
    assert "backbone" in gapplied.params and "max_train_batches" not in gapplied.fixed


@pytest.mark.parametrize("opts, option", [
    ({"grace_period": 7, "max_epochs": 6}, "--grace-period"),
    ({"grace_period": "soon"}, "--grace-period"),
    ({"reduction_factor": 1.0}, "--reduction-factor"),
    ({"gpus_per_trial": 1.0}, "--gpus-per-trial"),
    ({"cpus_per_trial": 3.0}, "--cpus-per-trial"),
    ({"num_samples": 0}, "--num-samples"),
    ({"name": "a/b"}, "--name"),
    ({"data": "cub"}, "--data-root"),
    ({"data": "imagenet"}, "--data"),
    ({"overrides": {"lrr": 0.1}}, "--set"),
    ({"overrides": {"epochs": 3}}, "--max-epochs"),
])
def test_bad_options_name_the_option(opts: dict, option: str) -> None:
    space = load_space("gholm")
    with pytest.raises(OptionError) as err:
        resolve_plan({"space": "gholm", "storage": "/tmp/nowhere", **opts}, space, gpus=0, cpus=2)
    assert option in str(err.value) and "Fix" in str(err.value)


def test_dry_run_prints_space_and_plan_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ray

    code = run_search.main(["--space", "gholm", "--dry-run", "--storage", str(tmp_path / "res"), "--name", "dry",
                            "--set", "lr_gamma=0.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "space 'gholm'" in out and "theta_low" in out and "first: 1.7" in out  # describe()
    assert "ASHA on val_acc" in out and "8 trials" in out and "lr_gamma=0.5" in out  # the plan
    assert "dry run: nothing started" in out
    assert not (tmp_path / "res").exists() and not ray.is_initialized()


def test_existing_folder_is_never_overwritten_and_resume_needs_a_search(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "taken").mkdir()
    assert run_search.main(["--space", "gholm", "--storage", str(tmp_path), "--name", "taken"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--name" in err
    assert run_search.main(["--resume", "--storage", str(tmp_path), "--name", "taken"]) == 2
    assert "no search started by run_search.py" in capsys.readouterr().err
    assert run_search.main(["--space", "no_such_space", "--dry-run"]) == 2
    assert "--space" in capsys.readouterr().err


# ----------------------------------------------------------------- records and tables
def test_curve_keeps_last_report_per_epoch_and_flags_divergence() -> None:
    rows = [{"epoch": 1, "val_acc": 0.2}, {"epoch": 2, "val_acc": 0.3}, {"epoch": 2, "val_acc": 0.35},  # replayed epoch
            {"diverged_epoch": 3, "val_acc": 0.0, "diverged": True, "error_message": "loss NaN"}]
    curve, diverged, message = curve_from_rows(rows)
    assert curve == [(1, 0.2), (2, 0.35)] and diverged and message == "loss NaN"
    assert status_of("TERMINATED", False, 6, 6) == "completed"
    assert status_of("TERMINATED", False, 2, 6) == "pruned"
    assert status_of("TERMINATED", True, 2, 6) == "diverged"
    assert status_of("ERROR", False, 6, 6) == "errored"
    assert status_of("RUNNING", False, 2, 6) == "unfinished"


def test_leaderboard_ranks_by_best_val_acc_with_failures_last(space_file: Path, tmp_path: Path,
                                                              fault_injection: object) -> None:
    space = load_space(str(space_file))
    rng = np.random.default_rng(0)
    specs = [("a", "TERMINATED", 4), ("b", "TERMINATED", 2), ("c", "TERMINATED", 1), ("d", "ERROR", 1), ("e", "TERMINATED", 4)]
    records = []
    for trial_id, status, epochs in specs:
        rows = [{"epoch": e, "val_acc": float(rng.uniform(0.1, 0.9))} for e in range(1, epochs + 1)]
        if trial_id == "c":
            rows.append({"diverged_epoch": 2, "val_acc": 0.0, "diverged": True, "error_message": "nan"})
        config = {"method": "gholm", "lr": float(rng.uniform(1e-4, 1e-2)), "mu": 1.8, "inject_nan_at_step": 30}
        records.append(make_record(trial_id, status, config, rows, space, max_epochs=4))
    by_id = {r.trial_id: r for r in records}
    assert [by_id[t].status for t in "abcde"] == ["completed", "pruned", "diverged", "errored", "completed"]
    ok = sorted((r for r in records if r.status in ("completed", "pruned")), key=lambda r: -r.best_val_acc)
    assert [r.trial_id for r in rank(records)] == [r.trial_id for r in ok] + ["c", "d"]
    assert best_record(records) is ok[0]
    assert by_id["a"].best_val_acc == max(v for _, v in by_id["a"].curve)
    write_leaderboard(records, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    assert [r["trial_id"] for r in rows] == [r.trial_id for r in rank(records)]
    assert set(rows[0]) >= {"trial_id", "method", "lr", "mu", "inject_nan_at_step", "best_val_acc", "epochs_run", "status"}
    assert float(rows[0]["best_val_acc"]) == pytest.approx(ok[0].best_val_acc, abs=1e-4)
    assert (tmp_path / "leaderboard.md").read_text().count("\n") == len(records) + 2


def test_importance_study_is_rebuilt_with_the_space_distributions(space_file: Path, fault_injection: object) -> None:
    import optuna

    from search.importance import param_importances, rebuild_study

    space = load_space(str(space_file))
    records, rng = [], np.random.default_rng(1)
    for i, lr in enumerate(np.geomspace(1e-4, 2e-2, 8)):
        rec = TrialRecord(trial_id=f"t{i}", method="gholm", config={"method": "gholm", "lr": float(lr), "mu": 1.6 + 0.05 * i,
                          "inject_nan_at_step": int(rng.integers(13, 61)), "simulate_oom_above_batch": [4, 1000][i % 2]},
                          knobs={}, curve=[(1, 0.1)], status="pruned",
                          best_val_acc=float(np.log10(lr)) + 5)  # accuracy driven by lr only
        records.append(rec)
    study = rebuild_study(space, records)
    assert len(study.trials) == 8
    dist = study.trials[0].distributions["lr"]
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log and dist.low == 1.0e-4
    assert study.trials[3].params["lr"] == pytest.approx(records[3].config["lr"])
    assert study.trials[3].value == pytest.approx(records[3].best_val_acc)
    importances = param_importances(space, records)["all"]
    assert set(importances) <= {"lr", "mu", "inject_nan_at_step", "simulate_oom_above_batch"} and max(importances, key=importances.get) in ("lr", "mu")


# ----------------------------------------------------------------- end to end
def _saved_statuses(exp: Path) -> dict[str, str]:
    """Trial statuses in Ray's latest experiment snapshot (what --resume restores)."""
    states = sorted(exp.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except ValueError:  # being rewritten right now
        return {}
    out = {}
    for trial_json, _runtime in data.get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        out[trial["trial_id"]] = trial["status"]
    return out


def _starts(exp: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
            for p in (exp / "trial_starts").glob("*.jsonl")}


def _nontrivial_png(path: Path) -> None:
    img = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    assert img.shape[0] >= 100 and img.shape[1] >= 100, f"{path} is tiny: {img.shape}"
    assert img.std() > 5, f"{path} is blank"


def test_search_end_to_end_killed_and_resumed(space_file: Path, tmp_path: Path, fault_injection: object) -> None:
    from fgmodels.config import resolve_config
    from fgmodels.data import build_datasets, load_raw
    from fgmodels.train import main as train_main
    from tests.wandb_offline import read_runs

    storage, name, samples, max_epochs = tmp_path / "res", "e2e", 6, 4
    exp = storage / name
    cmd = [sys.executable, str(REPO / "run_search.py"), "--space", str(space_file), "--storage", str(storage),
           "--name", name, "--num-samples", str(samples), "--max-epochs", str(max_epochs), "--grace-period", "1",
           "--reduction-factor", "2", "--max-concurrent", "2", "--cpus-per-trial", "1", "--wandb", "offline",
           "--seed", "0", "--no-smoke"]
    secret = "fgvc0test0secret0key0" + "f" * 19  # a 40-character key shape, as W&B keys are
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_SILENT": "true", "WANDB_API_KEY": secret,
           "FGVC_HOOKS": "tests.fault_injection:HOOK"}

    # 1. start the search, SIGKILL the driver once a finished trial is in Ray's snapshot
    log1 = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    finished_before_kill: set[str] = set()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            finished_before_kill = {t for t, s in _saved_statuses(exp).items() if s in ("TERMINATED", "ERROR")}
            if finished_before_kill:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the search ended before it could be interrupted:\n" + (tmp_path / "first.log").read_text()[-3000:]
        assert finished_before_kill, "no trial finished in time:\n" + (tmp_path / "first.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone: what it leaves behind is the resume's job
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # the test failed before its kill: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
        log1.close()
    assert proc.returncode == -signal.SIGKILL
    starts_before = _starts(exp)
    from search.leftovers import SESSION_FILE, session_processes

    session = json.loads((exp / SESSION_FILE).read_text())["session"]
    assert not (exp / "leaderboard.csv").exists()  # it really was cut short

    # 2. resume: finished trials are not run again, the rest completes
    done = subprocess.run([sys.executable, str(REPO / "run_search.py"), "--resume", "--storage", str(storage),
                           "--name", name], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=420)
    out = done.stdout + done.stderr
    leftover = session_processes(session)
    for pid in leftover:  # never leave them to the next test, even when the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert done.returncode == 0, out[-4000:]
    assert not leftover, f"processes of the killed search's Ray session {session} survived the resume: {leftover}"
    assert "the only test evaluation" in out and "wandb sync" in out

    starts = _starts(exp)
    assert len(starts) == samples  # every trial ran, none twice under another id
    for trial_id in finished_before_kill:
        assert starts[trial_id] == starts_before[trial_id] and len(starts[trial_id]) == 1, trial_id
    for trial_id, lines in starts.items():  # later starts of a trial resume from its checkpoint when one existed
        assert lines[0]["kind"] == "scratch" and all(ln["start_epoch"] >= 0 for ln in lines)

    # leaderboard: one row per trial, statuses explained, ASHA stopped someone early
    rows = list(csv.DictReader(open(exp / "leaderboard.csv")))
    assert len(rows) == samples and {r["trial_id"] for r in rows} == set(starts)
    statuses = {r["trial_id"]: r["status"] for r in rows}
    assert set(statuses.values()) <= {"completed", "pruned", "diverged"}
    assert "diverged" in statuses.values()  # the first point injects NaN: reported, not retried
    # every trial that hit the simulated OOM went on at half the micro-batch instead of failing
    oom_trials = [r for r in rows if int(r["simulate_oom_above_batch"]) == 4]
    assert oom_trials and all(r["status"] in ("completed", "pruned") for r in oom_trials), oom_trials
    for r in oom_trials:
        reports = _trial_reports(exp, r["trial_id"])
        assert reports and all(x["micro_batch"] == 4 and x["accum_steps"] == 2 for x in reports), reports
        assert reports[0]["oom_retries"] >= 1
    assert any(r["status"] == "pruned" and int(r["epochs_run"]) < max_epochs for r in rows), rows
    # ASHA let the best trials past its last rung (epoch 2). Not necessarily to max_epochs: Ray restores ASHA's
    # rung records from its last snapshot, so a trial killed after a rung can be judged at that rung again
    # (with a later epoch's val_acc) when it resumes, and be stopped then.
    assert max(int(r["epochs_run"]) for r in rows) > 2, rows
    _assert_pruning_contract(exp, statuses)
    accs = [float(r["best_val_acc"]) for r in rows if r["status"] != "diverged"]
    assert accs == sorted(accs, reverse=True) and all(0.0 <= a <= 1.0 for a in accs)
    assert (exp / "leaderboard.md").read_text().count(rows[0]["trial_id"]) == 1

    # best_config.yaml: plain keys that resolve and retrain
    best_cfg = yaml.safe_load((exp / "best_config.yaml").read_text())
    resolved = resolve_config(best_cfg)
    assert resolved["method"] == "gholm" and resolved["epochs"] == max_epochs and resolved["backbone"] == "test_convnext"
    assert train_main(["--config", str(exp / "best_config.yaml"), "--set", "epochs=1", "--set", "inject_nan_at_step=null",
                       "--workdir", str(tmp_path / "retrain"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "retrain" / "summary.json").read_text())["best_epoch"] == 1

    # the single test evaluation, of the best (by val_acc) trial's checkpoint, on the whole TEST split
    test = json.loads((exp / "test_result.json").read_text())
    assert test["trial_id"] == rows[0]["trial_id"] and 0.0 <= test["test_acc"] <= 1.0
    assert out.count("TEST split (the only test evaluation of this search)") == 1
    raw, _ = load_raw(resolved)
    val_images = len(build_datasets(resolved).val)
    assert test["test_images"] == len(raw.test) != val_images, (test["test_images"], len(raw.test), val_images)
    assert test["val_acc"] == pytest.approx(float(rows[0]["best_val_acc"]), abs=1e-4)
    assert "only evaluation on the test split" in test["note"]

    # plots and the best trial's visualisation (gholm has visualize())
    for png in ("learning_curves.png", "knobs_vs_accuracy.png", "param_importance.png"):
        _nontrivial_png(exp / png)
    viz = sorted((exp / "best_trial_viz").glob("*.png"))
    assert {p.stem for p in viz} >= {"crop_box", "drop"}
    assert np.asarray(Image.open(viz[0])).std() > 1

    # W&B offline: one run per trial in the search's group, per-epoch val_acc as in the leaderboard
    runs = read_runs(exp / "wandb")
    by_trial: dict[str, dict[int, float]] = {}
    complete = [run for run in runs if run.run_id]  # a run open when the driver was killed may hold nothing
    assert len(complete) >= samples - len(starts_before)
    for run in complete:
        assert run.group == name and run.run_id == f"{name}-{run.config['trial_id']}"
        assert run.config["method"] == "gholm" and "lr" in run.config and run.config["max_train_batches"] == 3
        for row in run.history:
            if isinstance(row.get("val_acc"), (int, float)) and not row.get("diverged"):
                by_trial.setdefault(run.config["trial_id"], {})[int(row["epoch"])] = row["val_acc"]
    resumed_only = [t for t in starts if t not in starts_before]
    assert resumed_only, "every trial had started before the kill: the test proves nothing about W&B after resume"
    for trial_id in resumed_only:
        row = next(r for r in rows if r["trial_id"] == trial_id)
        logged = by_trial[trial_id]
        assert len(logged) == int(row["epochs_run"]) or row["status"] == "diverged"
        if row["status"] != "diverged":
            assert max(logged.values()) == pytest.approx(float(row["best_val_acc"]), abs=1e-4)
    images = [k for run in runs for row in run.history for k in row if k.startswith("viz/")]
    assert images, "no visualisation was logged to W&B"
    assert not math.isnan(float(rows[0]["best_val_acc"]))

    # no secret anywhere in the results: configs, logs, W&B files, checkpoints
    leaked = [p for p in exp.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, leaked
    assert secret not in out


def _val_acc_by_epoch(exp: Path) -> dict[str, dict[int, float]]:
    """trial id -> {epoch: val_acc}, from the rows Ray wrote (last report of an epoch wins)."""
    out: dict[str, dict[int, float]] = {}
    for path in exp.glob("trial_*/result.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "epoch" in row and isinstance(row.get("val_acc"), (int, float)):
                out.setdefault(path.parent.name.removeprefix("trial_"), {})[int(row["epoch"])] = float(row["val_acc"])
    return out


RUNGS = (1, 2)  # ASHA's rungs in the end-to-end search: grace 1, reduction factor 2, below max_epochs 4


def _assert_pruning_contract(exp: Path, statuses: dict[str, str]) -> None:
    """Every trial the scheduler stopped at a rung had, at that rung, a val_acc
    not above the best of the trials it let go on from that rung (a scheduler
    that minimised val_acc, or read another metric, breaks this); and the
    leaderboard's "pruned" trials are exactly those the scheduler stopped."""
    from search.stops import load_stop_decisions

    stops = load_stop_decisions(str(exp))
    values = _val_acc_by_epoch(exp)
    assert stops and {t for t, s in statuses.items() if s == "pruned"} == set(stops), (stops, statuses)
    for trial_id, decision in stops.items():
        epoch = decision["epoch"]
        assert decision["scheduler"] == "asha" and epoch in values[trial_id], (trial_id, decision)
        if epoch in RUNGS:
            survivors = [t for t, by_epoch in values.items()
                         if epoch in by_epoch and (t not in stops or stops[t]["epoch"] > epoch)]
            assert survivors, f"trial {trial_id} was stopped at epoch {epoch}, but no trial went on from there"
            best = max(values[t][epoch] for t in survivors)
            assert values[trial_id][epoch] <= best, (trial_id, epoch, values[trial_id][epoch], best)
        else:  # judged again at its last rung after a resume (Ray restores ASHA's rung records from a snapshot)
            rung = max(r for r in RUNGS if r <= epoch)
            others = [by_epoch[rung] for t, by_epoch in values.items() if t != trial_id and rung in by_epoch]
            assert others and values[trial_id][epoch] <= max(others), (trial_id, decision, others)


def _trial_reports(exp: Path, trial_id: str) -> list[dict]:
    """Per-epoch rows Ray wrote for a trial (its result.json)."""
    files = [p for p in exp.glob(f"*{trial_id}*/result.json")]
    assert len(files) == 1, (trial_id, files)
    rows = [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]
    return [r for r in rows if "micro_batch" in r]


def test_union_space_importance_and_plots_are_grouped_by_method(tmp_path: Path) -> None:
    from search import plots
    from search.importance import param_importances
    from search.spaces import sample_configs

    space = load_space("baseline,gholm")
    records = []
    for i, cfg in enumerate(sample_configs(space, 16, seed=0)):
        method = cfg["method"]
        acc = 0.3 + 0.1 * math.log10(cfg["lr"] / 1e-5) / 4 + (0.2 if method == "gholm" else 0.0)
        knobs = {k: cfg[k] for k in space.member(method).params}
        records.append(TrialRecord(trial_id=f"t{i:02d}", method=method, config=cfg, knobs=knobs,
                                   curve=[(1, acc - 0.1), (2, acc)], status="completed" if i % 3 else "pruned",
                                   best_val_acc=acc, best_epoch=2, epochs_run=2))
    assert {r.method for r in records} == {"baseline", "gholm"}
    importances = param_importances(space, records)
    assert set(importances) == {"all", "baseline", "gholm"}
    assert "method" in importances["all"]  # the method choice itself is a knob of a union
    assert "mu" in importances["gholm"] and "mu" not in importances["baseline"]  # knobs stay with their method
    for name, path in {"curves": plots.learning_curves(records, 2, tmp_path / "c.png"),
                       "knobs": plots.knob_scatter(records, tmp_path / "k.png"),
                       "importance": plots.importance_bars(importances, tmp_path / "i.png")}.items():
        _nontrivial_png(path)


def test_wandb_default_mode_follows_login_without_revealing_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    from search.callbacks import default_wandb_mode

    secret = "k" * 40
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert default_wandb_mode() == "offline"  # no netrc file at all
    (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {secret}\n")
    (tmp_path / "netrc").chmod(0o600)
    assert default_wandb_mode() == "online"
    (tmp_path / "netrc").write_text("machine example.com\n  login user\n  password x\n")
    assert default_wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    assert default_wandb_mode() == "online"
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


def test_dashboard_is_off_by_default_and_localhost_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import search.tuner as tuner
    from search.plan import describe_plan

    space = load_space("gholm")
    plan, _ = resolve_plan({"space": "gholm", "name": "x", "storage": "/tmp/nowhere"}, space, gpus=0, cpus=2)
    assert plan.dashboard_host is None and "dashboard off" in describe_plan(plan)
    seen: dict = {}
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    monkeypatch.setattr("ray.init", lambda **kw: seen.update(kw))
    tuner.init_ray(plan)
    assert seen["include_dashboard"] is False and seen["dashboard_host"] == "127.0.0.1"
    try:
        import aiohttp  # noqa: F401
    except ImportError:  # ray[tune] only: asking for it is refused with the fix
        with pytest.raises(OptionError, match=r"ray\[default\]"):
            resolve_plan({"space": "gholm", "name": "x", "storage": "/tmp/nowhere", "dashboard_host": "127.0.0.1"},
                         space, gpus=0, cpus=2)
        return
    plan, _ = resolve_plan({"space": "gholm", "name": "x", "storage": "/tmp/nowhere", "dashboard_host": "127.0.0.1"},
                           space, gpus=0, cpus=2)
    tuner.init_ray(plan)
    assert seen["include_dashboard"] is True and seen["dashboard_host"] == "127.0.0.1"
