"""Every scheduler of ``--scheduler``: each in a real tiny search beside a
searcher (so every searcher runs for real too), early stops written by the
scheduler itself (also those HyperBand makes through the controller), PBT's
perturbations kept inside the space and trained with, and the impossible
pairs refused before Ray starts."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from search.options import OptionError
from search.pbt import ClipToSpace
from search.schedulers import build_scheduler
from search.spaces import SpaceError, load_space
from search.stops import RecordingScheduler, load_stop_decisions
from tests.test_cli import CLI, ENV, TINY, _no_ray_cli, _one_error_line
from tests.test_searchers import plan_for

LR = {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2}
# lr from "learns nothing" to "learns", on a validation split large enough to tell them apart
FIXED = {**TINY["fixed"], "synthetic_per_class": 30, "max_eval_batches": None}


def write(tmp_path: Path, params: dict[str, Any], first: Any, **extra: Any) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**TINY, "fixed": FIXED, "params": params, "first": first, **extra}, sort_keys=False))
    return path


# ----------------------------------------------------------------- the record of early stops
def test_median_rule_stops_a_trial_below_the_others_and_the_stop_is_recorded(tmp_path: Path) -> None:
    plan, space = plan_for(write(tmp_path, {"lr": LR}, {"lr": 1.0e-3}), tmp_path, scheduler="median",
                           max_epochs=4, grace_period=1)
    scheduler = build_scheduler(plan, space)
    assert isinstance(scheduler, RecordingScheduler) and type(scheduler.inner).__name__ == "MedianStoppingRule"
    controller = SimpleNamespace(get_live_trials=lambda: [])
    trials = [FakeTrial(f"t{i}") for i in range(4)]
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    for trial in trials[:3]:  # three trials at 0.9 after epochs 1 and 2
        for epoch in (1, 2):
            assert scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val_acc": 0.9}) == "CONTINUE"
    assert scheduler.on_trial_result(controller, trials[3], {"epoch": 1, "val_acc": 0.1}) == "STOP"
    assert load_stop_decisions(plan.experiment_path) == {"t3": {"epoch": 1, "scheduler": "median"}}


class FakeTrial:
    """What a scheduler reads of a trial (hashable, like Ray's)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.status, self.last_result = trial_id, "RUNNING", {}


class StopsAnother:
    """A scheduler that, like HyperBand, stops a paused trial through the controller."""

    metric = "val_acc"

    def __init__(self, victim: Any) -> None:
        self.victim = victim

    def choose_trial_to_run(self, controller: Any) -> None:
        controller.stop_trial(self.victim)


def test_a_stop_made_through_the_controller_is_recorded_and_carried_out(tmp_path: Path) -> None:
    paused = SimpleNamespace(trial_id="p", last_result={"epoch": 2, "val_acc": 0.1})
    stopped: list[Any] = []
    controller = SimpleNamespace(stop_trial=stopped.append)
    scheduler = RecordingScheduler(StopsAnother(paused), "hyperband", last_epoch=6, experiment_path=str(tmp_path))
    scheduler.choose_trial_to_run(controller)
    assert stopped == [paused]
    assert load_stop_decisions(str(tmp_path)) == {"p": {"epoch": 2, "scheduler": "hyperband"}}


# ----------------------------------------------------------------- PBT's knobs
def test_pbt_clips_perturbed_values_into_the_knob_range() -> None:
    clip = ClipToSpace({"lr": (1.0e-4, 1.0e-2)})
    assert clip({"lr": 1.2e-2, "batch_size": 8}) == {"lr": 1.0e-2, "batch_size": 8}
    assert clip({"lr": 0.8e-4})["lr"] == 1.0e-4 and clip({"lr": 5.0e-3})["lr"] == 5.0e-3


@pytest.mark.parametrize("mutable, message", [
    (["momentum"], "mutable.momentum: 'momentum' is not a searched param"),
    (["drop_rate"], "mutable.drop_rate: 'drop_rate' is a choice knob; PBT perturbs only continuous ones"),
    ("lr", "mutable: must be a list of searched knob names"),
])
def test_mutable_must_list_searched_continuous_knobs(tmp_path: Path, mutable: Any, message: str) -> None:
    path = write(tmp_path, {"lr": LR, "drop_rate": {"type": "choice", "values": [0.0, 0.2]}},
                 {"lr": 1.0e-3, "drop_rate": 0.0}, mutable=mutable)
    with pytest.raises(SpaceError, match="Fix: ") as err:
        load_space(str(path))
    assert message in str(err.value)


def test_mutable_knobs_shown_and_dropped_when_fixed(tmp_path: Path) -> None:
    space = load_space(str(write(tmp_path, {"lr": LR}, {"lr": 1.0e-3}, mutable=["lr"])))
    assert space.mutable == ("lr",) and "mutable (PBT): lr" in space.describe()
    assert space.apply_overrides({"lr": 1.0e-3}).mutable == ()
    assert load_space("gholm").mutable == ("lr", "weight_decay")
    with pytest.raises(OptionError, match="marks no knob as mutable"):  # --set lr=... leaves nothing to perturb
        plan_for(write(tmp_path, {"lr": LR}, {"lr": 1.0e-3}, mutable=["lr"]), tmp_path, searcher="random",
                 scheduler="pbt", overrides={"lr": 1.0e-3})


def _report(epoch: int, val_acc: float, lr: float | None = None) -> dict[str, Any]:
    """One row of a trial's results as Ray stores them; a (re)start's first row carries its config."""
    config = json.dumps({"method": "baseline", "lr": lr, "epochs": 3}) if lr is not None else float("nan")
    return {"epoch": epoch, "val_acc": val_acc, "trial_config": config}


PBT_ROWS = {  # fixed reports of three PBT trials (lr at each (re)start)
    # weak at epoch 1, then took a strong trial's weights with lr 2.4e-3: its best epoch (2) trained with that
    "w": [_report(1, 0.25, 1.0e-6), _report(2, 0.60, 2.4e-3), _report(3, 0.55)],
    # best at epoch 2 with its own lr; exploited after it (epoch 3 at 1.2e-3, worse)
    "x": [_report(1, 0.30, 5.0e-3), _report(2, 0.70), _report(3, 0.65, 1.2e-3)],
    # resumed (paused by synchronous PBT) with the same lr: one value
    "y": [_report(1, 0.40, 3.0e-3), _report(2, 0.50, 3.0e-3), _report(3, 0.45, 3.0e-3)],
}


def test_the_pbt_leaderboard_shows_the_lr_of_the_best_epoch_and_the_starting_one(tmp_path: Path) -> None:
    from search.records import make_record
    from search.results import write_leaderboard

    space = load_space(str(write(tmp_path, {"lr": LR}, {"lr": 1.0e-3}, mutable=["lr"])))
    records = [make_record(t, "TERMINATED", {}, rows, space, 3, stops={}, show_start=True)
               for t, rows in PBT_ROWS.items()]
    write_leaderboard(records, tmp_path)
    table = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    header = next(csv.reader((tmp_path / "leaderboard.csv").open()))
    assert header[header.index("lr") + 1] == "lr_start"
    got = {r["trial_id"]: (float(r["lr"]), float(r["lr_start"]), int(r["best_epoch"])) for r in table}
    assert got == {"w": (2.4e-3, 1.0e-6, 2), "x": (5.0e-3, 5.0e-3, 2), "y": (3.0e-3, 3.0e-3, 2)}
    assert [r.config["lr"] for r in records] == [2.4e-3, 5.0e-3, 3.0e-3]  # best_config.yaml retrains this lr
    # without PBT (no show_start) no _start column, and the config of the best epoch all the same
    plain = make_record("w", "TERMINATED", {}, PBT_ROWS["w"], space, 3, stops={})
    assert plain.knobs == {"lr": 2.4e-3}


# ----------------------------------------------------------------- impossible pairs: refused before Ray
@pytest.mark.parametrize("opts, message", [
    ({"searcher": "grid", "scheduler": "pbt"}, "--searcher grid with --scheduler pbt: PBT changes trials' knobs"),
    ({"searcher": "tpe", "scheduler": "pbt"}, "--searcher tpe with --scheduler pbt: Ray's PBT evolves"),
    ({"searcher": "random", "scheduler": "pbt", "space": "baseline,gholm"},
     "--scheduler pbt cannot search the union space"),
    ({"searcher": "random", "scheduler": "pbt", "space": "baseline"}, "marks no knob as mutable"),
])
def test_impossible_pairs_are_refused_with_the_reason(tmp_path: Path, opts: dict[str, str], message: str) -> None:
    from search.plan import resolve_plan

    opts = {"space": "gholm", "name": "x", "storage": str(tmp_path / "r"), **opts}
    with pytest.raises(OptionError, match="Fix: ") as err:
        resolve_plan(opts, load_space(opts["space"]), gpus=0, cpus=2)
    assert message in str(err.value)


def test_an_impossible_pair_exits_2_before_ray_starts(tmp_path: Path) -> None:
    line = _one_error_line(_no_ray_cli(["--space", "gholm", "--searcher", "grid", "--scheduler", "pbt",
                                        "--storage", str(tmp_path / "r")], tmp_path))
    assert line.startswith("error: --searcher grid with --scheduler pbt: "), line
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------- real searches
def _rows(exp: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((exp / "leaderboard.csv").open()))


def _reports(exp: Path, trial_id: str) -> list[dict[str, Any]]:
    text = (exp / f"trial_{trial_id}" / "result.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _started_first(exp: Path, count: int) -> list[str]:
    """The ``count`` trials that started first (by the trainable's start log)."""
    starts = {p.stem: json.loads(p.read_text().splitlines()[0])["time"] for p in (exp / "trial_starts").glob("*.jsonl")}
    return sorted(starts, key=starts.get)[:count]


def _search(tmp_path: Path, space: Path, searcher: str, scheduler: str, trials: int, epochs: int,
            concurrent: int, cpus_per_trial: float = 1.0) -> Path:
    done = subprocess.run([sys.executable, CLI, "--space", str(space), "--storage", str(tmp_path / "r"), "--name", "s",
                           "--searcher", searcher, "--scheduler", scheduler, "--num-samples", str(trials),
                           "--max-epochs", str(epochs), "--grace-period", "1", "--reduction-factor", "2",
                           "--max-concurrent", str(concurrent), "--cpus-per-trial", str(cpus_per_trial),
                           "--wandb", "off", "--no-smoke", "--no-test"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "r" / "s"


@pytest.mark.slow
@pytest.mark.parametrize("searcher, scheduler", [("tpe", "hyperband"), ("qmc", "median"), ("gp", "none"),
                                                 ("grid", "asha")])
def test_each_pair_runs_a_real_search_first_point_first_inside_the_space(tmp_path: Path, searcher: str,
                                                                          scheduler: str) -> None:
    if searcher == "grid":  # a finite grid: 2 x 2 points
        params = {"lr": {"type": "choice", "values": [1.0e-6, 5.0e-3]},
                  "drop_rate": {"type": "uniform", "low": 0.0, "high": 0.5, "step": 0.5}}
        first = {"lr": 5.0e-3, "drop_rate": 0.0}
    else:
        params, first = {"lr": LR}, {"lr": 5.0e-3}
    space_file = write(tmp_path, params, first)
    exp = _search(tmp_path, space_file, searcher, scheduler, trials=3, epochs=2, concurrent=2)
    space = load_space(str(space_file))
    rows = _rows(exp)
    assert len(rows) == 3 and {r["status"] for r in rows} <= {"completed", "pruned"}, rows
    stops = load_stop_decisions(str(exp))
    for row in rows:  # a trial that ran fewer epochs was stopped, and the scheduler wrote it down
        short = int(row["epochs_run"]) < 2
        assert short == (row["status"] == "pruned") == (row["trial_id"] in stops), (row, stops)
        config = space.to_trial_config(json.loads((exp / f"trial_{row['trial_id']}" / "params.json").read_text()))
        assert all(spec.contains(config[k]) for k, spec in space.params.items()), config
    if scheduler == "none":
        assert all(r["status"] == "completed" for r in rows)
    # the two trials that start together include the first point (its exact place: tests/test_searchers.py)
    firsts = [space.to_trial_config(json.loads((exp / f"trial_{t}" / "params.json").read_text()))
              for t in _started_first(exp, 2)]
    assert any({k: c[k] for k in first} == first for c in firsts), firsts
    if searcher == "grid":  # 3 of the 4 grid points, none twice
        assert len({(r["lr"], r["drop_rate"]) for r in rows}) == 3, rows


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true",
                    reason="synchronous PBT still passed no exploit once when another search loaded the 2 cores; "
                           "run it locally until the exploit is forced")
def test_pbt_exploits_with_perturbed_knobs_inside_the_space_that_the_trial_trains_with(tmp_path: Path) -> None:
    space_file = write(tmp_path, {"lr": LR}, {"lr": 1.0e-6}, mutable=["lr"])
    # synchronous PBT: at epoch 1 every trial waits for the whole population, then the bottom
    # quarter (one of four trials) takes the top one's weights, whatever the order the trials ran in
    exp = _search(tmp_path, space_file, "random", "pbt", trials=4, epochs=2, concurrent=4, cpus_per_trial=0.5)
    rows = _rows(exp)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows), rows
    exploited = 0
    for row in rows:
        reports = _reports(exp, row["trial_id"])
        configs = [json.loads(r["trial_config"]) for r in reports if "trial_config" in r]
        assert configs and all(LR["low"] <= c["lr"] <= LR["high"] for c in configs), configs
        current: dict[str, Any] = {}
        for report in reports:  # the optimiser runs at the lr of the config the trial was (re)started with
            current = json.loads(report["trial_config"]) if "trial_config" in report else current
            assert report["lr"] == pytest.approx(current["lr"]), (report, current)
        restarts = [json.loads(r["trial_config"]) for r in reports if "trial_config" in r and r["resumed_from_epoch"] > 0]
        exploited += any(c["lr"] != configs[0]["lr"] for c in restarts)
        # the leaderboard: the lr that trained the best epoch (its last report), and the one the trial started with
        best_epoch, trained_with = int(row["best_epoch"]), None
        for report in reports:
            current = json.loads(report["trial_config"]) if "trial_config" in report else current
            if report.get("epoch") == best_epoch and "val_acc" in report:
                trained_with = current["lr"]
        assert float(row["lr"]) == pytest.approx(trained_with, rel=1e-3), (row, reports)
        assert float(row["lr_start"]) == pytest.approx(configs[0]["lr"], rel=1e-3), row
    assert exploited >= 1  # some weak trial took a strong one's weights with a perturbed lr
