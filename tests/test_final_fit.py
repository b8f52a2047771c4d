"""The final fit on the whole training split and the seed re-runs, for real:
``val_fraction`` 0 trains on every training image (counted by a recording
hook and by the trial's reports, against the dataset's size computed here),
with no validation metrics and a checkpoint per epoch; a tiny search with
``--final-fit full --final-seeds 2 --rerun-top 2 --ensemble 2`` reads the
test split exactly once per final model (an evaluation counter wrapped around the CLI),
and test_result.json and the leaderboard carry the search's val_acc, the
final test accuracy with a mean and sd computed here from the per-seed
values, and the re-runs' seed columns against the values the trials recorded."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fgmodels.data.split import stratified_split
from fgmodels.data.types import Sample
from tests.test_cli import CLI, ENV, TINY

CLASSES, PER_CLASS, BATCH = 4, 16, 8
POOL = CLASSES * (PER_CLASS // 2)  # the synthetic set puts half of each class in the training pool: 32
VAL = CLASSES * round(PER_CLASS // 2 * 0.2)  # val_fraction 0.2 of 8 per class: 2 per class, 8
FIXED = {**TINY["fixed"], "synthetic_classes": CLASSES, "synthetic_per_class": PER_CLASS, "batch_size": BATCH,
         "max_train_batches": None, "max_eval_batches": None}


class ImageCounter:
    """A training hook that counts the images of every step, per epoch."""

    keys: dict[str, Any] = {}

    def __init__(self) -> None:
        self.per_epoch: dict[int, int] = {}

    def before_step(self, trainer: Any, images: torch.Tensor, labels: torch.Tensor) -> None:
        epoch = trainer.epochs_done + 1
        self.per_epoch[epoch] = self.per_epoch.get(epoch, 0) + int(images.shape[0])

    def after_loss(self, trainer: Any, loss: torch.Tensor) -> torch.Tensor:
        return loss


def test_a_zero_validation_fraction_keeps_every_training_image() -> None:
    samples = [Sample(path=f"{c}/{i}.jpg", label=c) for c in range(3) for i in range(5)]
    train, val = stratified_split(samples, 0.0, seed=0)
    assert train == samples and val == []


def test_a_run_without_validation_trains_on_every_image_and_checkpoints_each_epoch(tmp_path: Path) -> None:
    from fgmodels.checkpoint import BEST_DIR, STATE_FILE
    from fgmodels.engine import Trainer
    from fgmodels.hooks import install_hook, remove_hook

    counter = ImageCounter()
    install_hook(counter)
    saved: list[int] = []
    try:
        trainer = Trainer({**FIXED, "epochs": 2, "val_fraction": 0.0}, tmp_path / "run", progress=False)
        assert trainer.val_loader is None and len(trainer.data.val) == 0
        result = trainer.fit(lambda m, ckpt: saved.append(int((ckpt / STATE_FILE).exists()) * m["epoch"]))
    finally:
        remove_hook(counter)
    assert counter.per_epoch == {1: POOL, 2: POOL}  # every training image, validation images included
    assert [m["train_images"] for m in result.history] == [POOL, POOL]
    assert saved == [1, 2]  # a full checkpoint after each epoch
    assert all("val_acc" not in m and "best_val_acc" not in m and not m["improved"] for m in result.history)
    assert not (tmp_path / "run" / BEST_DIR).exists()  # no validation: no "best" epoch


# The real CLI, with every checkpoint evaluation written to LOG (which split, which weights).
COUNTING = """import json, runpy, sys
import fgmodels.engine as engine
real = engine.evaluate_checkpoint
def counted(checkpoint_dir, cfg, split="test"):
    with open(LOG, "a") as fh:
        fh.write(json.dumps({"split": split, "checkpoint": str(checkpoint_dir)}) + "\\n")
    return real(checkpoint_dir, cfg, split)
engine.evaluate_checkpoint = counted
sys.argv[0] = CLI
runpy.run_path(CLI, run_name="__main__")
"""


def _rows(trial_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def _trials(folder: Path) -> list[Path]:
    """The trial folders of a Ray experiment (``trial_starts/`` is not one)."""
    return sorted(p.parent for p in folder.glob("trial_*/result.json"))


def _best_val(trial_dir: Path) -> float:
    return max(r["val_acc"] for r in _rows(trial_dir) if "val_acc" in r)


@pytest.mark.slow
def test_a_search_with_reruns_and_two_final_seeds_tests_each_final_model_once(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump({**TINY, "fixed": FIXED}, sort_keys=False))
    log = tmp_path / "evaluations.jsonl"
    repo = str(Path(CLI).parent)  # `python -c` puts the cwd (tmp_path) on sys.path, not the repository
    script = f"import sys\nsys.path.insert(0, {repo!r})\nLOG = {str(log)!r}\nCLI = {CLI!r}\n" + COUNTING
    done = subprocess.run([sys.executable, "-c", script, "--space", str(space), "--storage", str(tmp_path / "r"),
                           "--name", "ff", "--num-samples", "2", "--max-epochs", "1", "--max-concurrent", "2",
                           "--wandb", "off", "--final-fit", "full", "--final-seeds", "2", "--rerun-top", "2",
                           "--rerun-seeds", "1", "--ensemble", "2", "--keep-checkpoints", "2",
                           # --set keeps the space's small synthetic set (the CPU demo's defaults would enlarge it)
                           "--set", f"synthetic_per_class={PER_CLASS}", "--set", "val_fraction=0.2"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "r" / "ff"
    result = json.loads((exp / "test_result.json").read_text())
    runs = result["final_fit"]["runs"]

    # the search's trials trained without their validation images, the final fits on all of them
    assert len(_trials(exp)) == 2
    for trial in _trials(exp):
        assert {r["train_images"] for r in _rows(trial) if "epoch" in r} == {POOL - VAL}, trial
    finals = _trials(exp / "final_fit")
    assert len(finals) == 2
    for trial in finals:
        rows = [r for r in _rows(trial) if "epoch" in r]
        assert [r["train_images"] for r in rows] == [POOL] and not any("val_acc" in r for r in rows)
    assert [r["train_images_per_epoch"] for r in runs] == [POOL, POOL]

    # the test split: read once per final model, by its last checkpoint, and by nothing else
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["split"] for e in evaluations] == ["test", "test"]
    assert sorted(e["checkpoint"] for e in evaluations) == sorted(r["checkpoint"] for r in runs)
    assert all(str(exp / "final_fit") in r["checkpoint"] for r in runs)

    # two seeds, two models, and their mean and sd computed here
    assert result["final_fit"]["seeds"] == [0, 1] and len({r["trial_id"] for r in runs}) == 2
    assert runs[0]["test_loss"] != runs[1]["test_loss"]
    accs = [r["test_acc"] for r in runs]
    assert math.isclose(result["test_acc"], statistics.fmean(accs))
    assert math.isclose(result["test_acc_sd"], statistics.stdev(accs), abs_tol=1e-12)

    # the re-runs: seed columns from the values the trials recorded
    board = {r["trial_id"]: r for r in csv.DictReader((exp / "leaderboard.csv").open())}
    assert len(board) == 2
    originals = {json.loads((t / "params.json").read_text())["lr"]: t for t in _trials(exp)}
    stats = {}
    for rerun in _trials(exp / "reruns"):
        params = json.loads((rerun / "params.json").read_text())
        original = originals[params["lr"]]
        assert params["seed"] == 1
        values = [_best_val(original), _best_val(rerun)]
        stats[original.name.removeprefix("trial_")] = (statistics.fmean(values), statistics.stdev(values))
    assert set(stats) == set(board)
    for tid, (mean, sd) in stats.items():
        assert abs(float(board[tid]["val_acc_mean"]) - mean) < 6e-5 and abs(float(board[tid]["val_acc_sd"]) - sd) < 6e-5
        assert board[tid]["seeds"] == "2"
    (m1, s1), (m2, s2) = sorted(stats.values(), reverse=True)
    md = (exp / "leaderboard.md").read_text()
    assert ("not a finding" in md) == (m1 - m2 < max(s1, s2)), md
    assert "the top-2 difference" in done.stdout

    # the winner: the best seed mean; its search val_acc and its final test accuracy, separately
    assert math.isclose(stats[result["trial_id"]][0], m1)
    assert result["selected_by"] == "seed mean of best val_acc over 2 seeds"
    assert result["val_acc"] == float(board[result["trial_id"]]["best_val_acc"])
    assert board[result["trial_id"]]["final_test_acc"] == f"{result['test_acc']:.4f}"
    assert [r["final_test_acc"] for t, r in board.items() if t != result["trial_id"]] == [""]
    assert "final fit of trial" in md and f"TEST acc {result['test_acc']:.4f}" in done.stdout

    # the ensemble of search checkpoints keeps its test entry beside the final fit's
    entry = result["ensemble"]
    assert entry["test_images"] == result["test_images"] == 32 and 0.0 <= entry["test_acc"] <= 1.0
    assert entry["members"][0]["trial_id"] in board


@pytest.mark.slow
def test_resume_continues_an_interrupted_final_fit(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump({**TINY, "fixed": {**FIXED, "step_delay_s": 0.6}}, sort_keys=False))
    storage, first = tmp_path / "r", tmp_path / "first.log"
    cmd = [sys.executable, CLI, "--space", str(space), "--storage", str(storage), "--name", "rf", "--num-samples", "1",
           "--max-epochs", "3", "--grace-period", "3", "--wandb", "off", "--final-fit", "full",
           "--set", f"synthetic_per_class={PER_CLASS}", "--set", "val_fraction=0.2"]  # the small set, not the demo's
    with open(first, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=ENV,
                                start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and "[final fit] trial" not in first.read_text():
                time.sleep(0.2)
            # Ray prints a result before it registers the result's checkpoint: wait for epoch 2's line, by which
            # time epoch 1's checkpoint is registered, and interrupt during epoch 3
            while time.time() < deadline and proc.poll() is None and " epoch 2/3 " not in first.read_text().split(
                    "[final fit] starting")[-1]:
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=120) == 130, first.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    exp = storage / "rf"
    assert not (exp / "test_result.json").exists() and "--resume --name rf" in first.read_text()
    done = subprocess.run([sys.executable, CLI, "--resume", "--name", "rf", "--storage", str(storage)],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[final fit] resuming" in done.stdout
    (final,) = _trials(exp / "final_fit")
    tid = final.name.removeprefix("trial_")
    starts = [json.loads(line) for line in (exp / "trial_starts" / f"{tid}.jsonl").read_text().splitlines()]
    assert [s["kind"] for s in starts] == ["scratch", "resume"] and starts[1]["start_epoch"] >= 1
    (search_trial,) = _trials(exp)  # the search's own trial was not run again
    assert len((exp / "trial_starts" / f"{search_trial.name.removeprefix('trial_')}.jsonl").read_text().splitlines()) == 1
    result = json.loads((exp / "test_result.json").read_text())
    assert result["final_fit"]["runs"][0]["epochs"] == 3 and result["trial_id"] == search_trial.name.removeprefix("trial_")


def test_a_plateau_switch_is_replayed_where_the_search_trial_switched(tmp_path: Path) -> None:
    from search.final_fit import final_configs
    from search.records import COMPLETED, TrialRecord

    rows = [{"epoch": e, "val_acc": 0.5, "opt_phase": int(e > 3)} for e in range(1, 7)]  # phase 1 from epoch 4
    (tmp_path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"method": "baseline", "seed": 5, "epochs": 6, "switch": "plateau", "switch_epoch": None,
           "max_train_batches": 15, "val_fraction": 0.2, "amp": False}
    best = TrialRecord(trial_id="t", method="baseline", config=cfg, knobs={}, curve=[(6, 0.5)], status=COMPLETED,
                       best_val_acc=0.5, best_epoch=6, epochs_run=6, path=str(tmp_path))
    configs = final_configs(best, 2)
    assert [c["seed"] for c in configs] == [5, 6]
    assert all(c["switch_epoch"] == 3 and c["val_fraction"] == 0.0 and c["max_train_batches"] is None
               and c["amp"] == "auto" for c in configs)
    assert final_configs(TrialRecord(**{**best.__dict__, "config": {**cfg, "switch": "epoch"}}), 1)[0]["switch_epoch"] is None


def test_the_training_cli_tests_the_last_epoch_of_a_run_without_validation(tmp_path: Path) -> None:
    from fgmodels.train import main

    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**FIXED, "epochs": 1, "val_fraction": 0.0}.items()]
    assert main([*sets, "--workdir", str(tmp_path / "run"), "--test", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_epoch"] == 0 and summary["test"]["n"] == POOL  # the test split: the other half, 32 images
