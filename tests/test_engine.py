"""The shared training loop: learning, resume, optimiser phases, faults."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fgmodels.checkpoint import load_state
from fgmodels.config import ConfigError, resolve_config
from fgmodels.engine import Trainer, TrialDiverged, evaluate_checkpoint, fit


def tiny_cfg(**overrides):
    cfg = {
        "method": "baseline",
        "backbone": "test_resnet",
        "data": "synthetic",
        "epochs": 2,
        "batch_size": 16,
        "opt": "adamw",
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "sched": "constant",
        "max_train_batches": 6,
        "seed": 0,
    }
    cfg.update(overrides)
    return cfg


class _Stop(Exception):
    pass


def test_baseline_learns_above_chance_on_synthetic(tmp_path: Path) -> None:
    cfg = tiny_cfg(epochs=6, max_train_batches=None, lr=3e-3)
    result = fit(cfg, tmp_path / "run", progress=False)
    chance = 1.0 / 10
    assert result.best_val_acc > 2.5 * chance, result.history
    # history and files agree
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert all(h["train_images_per_s"] > 0 for h in result.history)
    # training loss went down over the run
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the best checkpoint reproduces its validation accuracy exactly
    again = evaluate_checkpoint(result.best_dir, result.config, split="val")
    assert again["acc"] == pytest.approx(result.best_val_acc)


def test_resume_reproduces_next_epoch_metrics(tmp_path: Path) -> None:
    cfg = tiny_cfg(epochs=3, max_train_batches=4)
    full = fit(cfg, tmp_path / "full", progress=False)

    def stop_after_first(metrics, ckpt):
        if metrics["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        fit(cfg, tmp_path / "cut", on_epoch_end=stop_after_first, progress=False)
    resumed = fit(cfg, tmp_path / "cut", resume_from=tmp_path / "cut" / "checkpoint", progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for key in ("train_loss", "val_acc", "val_loss"):
        assert resumed.history[1][key] == pytest.approx(full.history[1][key], rel=1e-5, abs=1e-6), key
        assert resumed.history[2][key] == pytest.approx(full.history[2][key], rel=1e-5, abs=1e-6), key


def test_optimiser_switch_happens_at_configured_epoch(tmp_path: Path) -> None:
    cfg = tiny_cfg(epochs=3, opt="adam", switch_epoch=2, opt_after_switch="sgd", lr_after_switch=1e-3,
                   max_train_batches=2)
    result = fit(cfg, tmp_path, progress=False)
    assert [h["optimizer"] for h in result.history] == ["adam", "adam", "sgd"]
    assert [h["lr"] for h in result.history] == pytest.approx([3e-3, 3e-3, 1e-3])
    state = load_state(tmp_path / "checkpoint")
    # fresh SGD state: momentum buffers only, no Adam moments carried over
    per_param = list(state["optimizer"]["state"].values())
    assert per_param and all("exp_avg" not in s for s in per_param)
    assert all("momentum_buffer" in s for s in per_param)


def test_nan_loss_stops_trial_and_keeps_last_good_checkpoint(tmp_path: Path, fault_injection) -> None:
    cfg = tiny_cfg(epochs=3, max_train_batches=3, inject_nan_at_step=4)  # inside epoch 2
    with pytest.raises(TrialDiverged) as err:
        fit(cfg, tmp_path, progress=False)
    msg = str(err.value)
    assert "NaN" in msg and "epoch 2" in msg and str(tmp_path / "checkpoint") in msg
    state = load_state(tmp_path / "checkpoint")
    assert state["epochs_done"] == 1  # epoch 1 is the last good one
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_out_of_memory_retries_with_half_micro_batch(tmp_path: Path, fault_injection) -> None:
    cfg = tiny_cfg(epochs=2, batch_size=16, simulate_oom_above_batch=8, max_train_batches=3)
    result = fit(cfg, tmp_path, progress=False)
    assert [h["micro_batch"] for h in result.history] == [8, 8]
    assert [h["accum_steps"] for h in result.history] == [2, 2]
    assert result.history[-1]["oom_retries"] == 1
    assert all(math.isfinite(h["train_loss"]) for h in result.history)


def test_out_of_memory_at_micro_batch_one_gives_up_clearly(tmp_path: Path, fault_injection) -> None:
    cfg = tiny_cfg(epochs=1, batch_size=2, simulate_oom_above_batch=0, max_train_batches=1)
    with pytest.raises(torch.OutOfMemoryError, match="micro-batch 1"):
        fit(cfg, tmp_path, progress=False)


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ConfigError, match="'learning_rate'.*did you mean"):
        resolve_config({"method": "baseline", "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="unknown method 'baseline2'"):
        resolve_config({"method": "baseline2"})


def test_trainer_exposes_resolved_config(tmp_path: Path) -> None:
    trainer = Trainer(tiny_cfg(), tmp_path, progress=False)
    assert trainer.cfg["momentum"] == 0.9 and trainer.num_classes == 10
    assert (tmp_path / "config.yaml").is_file()


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    """A checkpoint that would run code when unpickled is refused, not executed."""
    import pickle

    from fgmodels.checkpoint import STATE_FILE

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "ckpt").mkdir()
    torch.save({"model": {}, "evil": Payload()}, tmp_path / "ckpt" / STATE_FILE)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        load_state(tmp_path / "ckpt")
    assert not (tmp_path / "pwned").exists()


def test_validation_split_does_not_move_with_the_training_seed() -> None:
    from fgmodels.data import build_datasets

    def val_paths(**kw):
        cfg = resolve_config({"data": "synthetic", **kw})
        return sorted(s.path for s in build_datasets(cfg).val.samples)

    assert val_paths(seed=0) == val_paths(seed=7)
    assert val_paths(split_seed=0) != val_paths(split_seed=1)
