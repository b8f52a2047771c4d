"""One config flow from the space file to the leaderboard: Optuna names both
ways, the order of the first points, the trainable's resolved config, and what
reaches W&B and the records."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml

from fgmodels.config import TRAIN_DEFAULTS
from search.spaces import load_space, sample_configs

BASE = """\
fixed: {method: baseline, backbone: test_resnet, pretrained: false, epochs: 2, opt: adamw,
        synthetic_classes: 3, synthetic_per_class: 16, max_train_batches: 2, max_eval_batches: 1, device: cpu}
params:
  lr:              {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  weight_decay:    {type: loguniform, low: 1.0e-5, high: 1.0e-3}
  label_smoothing: {type: uniform, low: 0.0, high: 0.2}
  batch_size:      {type: choice, values: [4, 8]}
first:
  - {lr: 1.0e-3, weight_decay: 1.0e-4, label_smoothing: 0.1, batch_size: 8}
  - {lr: 3.0e-3, weight_decay: 2.0e-4, label_smoothing: 0.0, batch_size: 4}
  - {lr: 5.0e-3, weight_decay: 1.0e-5, label_smoothing: 0.2, batch_size: 8}
"""
GHOLM = """\
fixed: {method: gholm, backbone: test_convnext, epochs: 2}
params:
  mu:            {type: uniform, low: 1.5, high: 2.2}
  theta_low:     {type: uniform, low: 0.8, high: 1.5}
  lr:            {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  lr_milestones: {type: choice, values: [[1, 2], [5, 8]]}
first:
  - {mu: 1.7, theta_low: 1.0, lr: 1.0e-3, lr_milestones: [5, 8]}
  - {mu: 2.1, theta_low: 1.4, lr: 2.0e-3, lr_milestones: [1, 2]}
"""


@pytest.fixture()
def spaces(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "gh.yaml").write_text(GHOLM)
    (tmp_path / "both.yaml").write_text("include: [base, gh]\n")
    return tmp_path


def _yaml_firsts(folder: Path, name: str) -> list[dict[str, Any]]:
    """The first configs as the YAML file writes them (fixed + each point)."""
    data = yaml.safe_load((folder / f"{name}.yaml").read_text())
    return [{**data["fixed"], **point} for point in data["first"]]


# ------------------------------------------------------------------ Optuna names
@pytest.mark.parametrize("name", ["base", "gh", "both"])
def test_configs_round_trip_through_optuna_names(spaces: Path, name: str) -> None:
    """config -> Optuna names -> config keeps every knob (several per method)."""
    space = load_space(str(spaces / f"{name}.yaml"))
    expected = _yaml_firsts(spaces, "base") * (name != "gh") + _yaml_firsts(spaces, "gh") * (name != "base")
    assert space.first == expected
    for cfg in expected + sample_configs(space, 12, seed=4):
        member = space.member(cfg["method"])
        point = space.names.point(cfg, member)
        scope = f"{cfg['method']}:" if space.is_union else ""
        assert set(point) == {scope + k for k in member.params} | ({"method"} if space.is_union else set())
        trial = optuna.trial.FixedTrial(point)
        returned = space.define_by_run(trial)
        assert space.to_trial_config({**trial.params, **returned}) == cfg


def test_decode_keeps_every_knob_of_a_flat_union_config() -> None:
    from search.spaces import to_trial_config

    flat = {"method": "gholm", "gholm:mu": 1.9, "gholm:theta_low": 0.9, "gholm:lr": 0.004, "epochs": 3}
    assert to_trial_config(flat) == {"method": "gholm", "mu": 1.9, "theta_low": 0.9, "lr": 0.004, "epochs": 3}


@pytest.mark.parametrize("name", ["base", "both"])
def test_the_searcher_proposes_the_first_points_first_in_order(spaces: Path, name: str) -> None:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(str(spaces / f"{name}.yaml"))
    firsts = _yaml_firsts(spaces, "base") + (_yaml_firsts(spaces, "gh") if name == "both" else [])
    search = OptunaSearch(space=space.define_by_run, metric="val_acc", mode="max",
                          points_to_evaluate=space.points_to_evaluate(), seed=0)
    proposed = []
    for i in range(len(firsts) + 3):
        proposed.append(space.to_trial_config(search.suggest(f"t{i}")))
        search.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i})
    assert proposed[: len(firsts)] == firsts
    assert all(cfg not in firsts for cfg in proposed[len(firsts):])  # then sampled, new points


# ------------------------------------------------------------------ the trainable and what follows
def _run_trial(monkeypatch: pytest.MonkeyPatch, workdir: Path, ray_config: dict[str, Any]) -> list[dict[str, Any]]:
    """``train_trial`` outside Ray: its reports, each with a copy of its checkpoint folder."""
    from ray import tune

    from search.trainable import train_trial

    reports: list[dict[str, Any]] = []

    def report(record: dict[str, Any], checkpoint: Any = None) -> None:
        if checkpoint is not None:
            copy = workdir / f"reported_ckpt_{len(reports)}"
            shutil.copytree(checkpoint.path, copy)
            record = {**record, "_checkpoint": copy}
        reports.append(dict(record))

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0"))
    train_trial(ray_config)
    return reports


def test_a_trial_resolves_its_config_once_and_wandb_and_records_read_it(
        spaces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.search.optuna import OptunaSearch
    from tests.wandb_offline import read_runs

    from fgmodels.registry import get_method_class
    from search.callbacks import WandbTrialCallback
    from search.records import make_record
    from search.results import write_best_config, write_leaderboard

    space = load_space(str(spaces / "both.yaml"))
    search = OptunaSearch(space=space.define_by_run, metric="val_acc", mode="max",
                          points_to_evaluate=space.points_to_evaluate(), seed=0)
    ray_config = search.suggest("t0")  # the first point of the union: baseline, with "baseline:<key>" names
    assert ray_config["baseline:lr"] == 1e-3 and "momentum" not in ray_config
    work = tmp_path / "trial"
    work.mkdir()
    reports = _run_trial(monkeypatch, work, ray_config)

    # resolved once: YAML values + every default, computed here without the code under test
    cls = get_method_class("baseline")
    expected = {**TRAIN_DEFAULTS, "backbone": cls.default_backbone, **cls.hparams, **_yaml_firsts(spaces, "base")[0]}
    # the `auto` runtime keys as decided for a CPU trial (docs/speed.md): what ran is what is saved
    expected.update(amp="off", pipeline="cache", workers=0, channels_last=False, compile=False)
    saved = [yaml.safe_load((r["_checkpoint"] / "trial_config.yaml").read_text()) for r in reports]
    assert saved[0] == saved[-1] == json.loads(json.dumps(expected))
    assert [r["epoch"] for r in reports] == [1, 2]
    assert json.loads(reports[0]["trial_config"]) == saved[0] and "trial_config" not in reports[1]

    # W&B: the resolved keys (not Ray's names) and the per-epoch metrics
    callback = WandbTrialCallback("offline", "flow", str(tmp_path / "wb"))
    trial = SimpleNamespace(trial_id="t0", config=ray_config)
    for r in reports:
        callback.on_trial_result(0, [], trial, {k: v for k, v in r.items() if k != "_checkpoint"})
    callback.on_trial_complete(0, [], trial)
    (run,) = read_runs(tmp_path / "wb" / "wandb")
    assert set(run.config) - {"_wandb"} == set(expected) | {"search", "trial_id"}  # _wandb: W&B's own
    assert {k: run.config[k] for k in ("lr", "momentum", "label_smoothing", "backbone")} == {
        "lr": 1e-3, "momentum": expected["momentum"], "label_smoothing": 0.1, "backbone": "test_resnet"}
    logged = {int(row["epoch"]): row["val_acc"] for row in run.history if "val_acc" in row}
    assert logged == {r["epoch"]: pytest.approx(r["val_acc"]) for r in reports}

    # records, leaderboard and best_config.yaml: the saved config, not Ray's dict
    rows = [{k: v for k, v in r.items() if k != "_checkpoint"} for r in reports]
    record = make_record("t0", "TERMINATED", ray_config, rows, space, max_epochs=2)
    assert record.config == saved[0] and record.status == "completed" and record.best_epoch in (1, 2)
    write_leaderboard([record], tmp_path)
    path = write_best_config(record, SimpleNamespace(name="flow"), tmp_path)
    assert yaml.safe_load(path.read_text()) == saved[0]


def test_records_show_the_reported_config_where_rays_dict_differs(spaces: Path, tmp_path: Path) -> None:
    import csv

    from search.records import make_record
    from search.results import write_leaderboard

    space = load_space(str(spaces / "both.yaml"))
    ray_config = {"method": "gholm", "gholm:mu": 1.8, "gholm:theta_low": 1.0, "gholm:lr": 1e-3,
                  "gholm:lr_milestones": [5, 8], "backbone": "test_convnext", "epochs": 2}
    saved = {**space.to_trial_config(ray_config), "mu": 1.95, "tau": 0.7}  # what the trial resolved and saved
    rows = [{"epoch": 1, "val_acc": 0.4, "trial_config": json.dumps(saved)}, {"epoch": 2, "val_acc": 0.5}]
    record = make_record("g1", "TERMINATED", ray_config, rows, space, max_epochs=2)
    assert record.config == saved and record.knobs["mu"] == 1.95
    write_leaderboard([record], tmp_path)
    (row,) = csv.DictReader(open(tmp_path / "leaderboard.csv"))
    assert float(row["mu"]) == 1.95 and row["best_epoch"] == "2" and row["status"] == "completed"


# ------------------------------------------------------------------ statuses
def test_pruned_means_the_scheduler_stopped_it(spaces: Path) -> None:
    from search.records import make_record

    space = load_space(str(spaces / "base.yaml"))
    cfg = {"method": "baseline", "lr": 1e-3}
    two = [{"epoch": 1, "val_acc": 0.3}, {"epoch": 2, "val_acc": 0.4}]
    stops = {"a": {"epoch": 2, "scheduler": "asha"}}
    status = {t: make_record(t, "TERMINATED", cfg, two, space, max_epochs=4, stops=stops).status for t in ("a", "b")}
    assert status == {"a": "pruned", "b": "completed"}  # b was not stopped by the scheduler
    assert make_record("c", "RUNNING", cfg, two, space, max_epochs=4, stops={"c": {"epoch": 2}}).status == "pruned"
    assert make_record("d", "RUNNING", cfg, two, space, max_epochs=4, stops={}).status == "unfinished"
    # at max epochs a scheduler's STOP is the normal end: completed
    four = two + [{"epoch": 3, "val_acc": 0.5}, {"epoch": 4, "val_acc": 0.6}]
    assert make_record("e", "TERMINATED", cfg, four, space, max_epochs=4, stops={"e": {"epoch": 4}}).status == "completed"
    # without recorded decisions: inferred from the epochs run
    assert make_record("f", "TERMINATED", cfg, two, space, max_epochs=4).status == "pruned"


def test_progress_printer_says_what_stopped_a_trial(capsys: pytest.CaptureFixture) -> None:
    from search.callbacks import ProgressPrinter

    stops = {"a": {"epoch": 2, "scheduler": "median"}}
    printer = ProgressPrinter(max_epochs=5, num_samples=3, stop_decisions=lambda: stops)
    for trial_id, epoch in (("a", 2), ("b", 5)):
        printer.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id, last_result={"epoch": epoch}))
    out = capsys.readouterr().out
    assert "trial a stopped by the scheduler (median) at epoch 2" in out
    assert "trial b completed 5 epochs" in out and "ASHA" not in out
