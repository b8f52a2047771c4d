"""The loop's arithmetic and fault handling, each checked against an independent
computation: gradient accumulation, the out-of-memory fallback, the divergence
check's reach, and the one way epochs are counted."""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from fgmodels.checkpoint import load_state
from fgmodels.engine import Trainer, TrialDiverged, fit
from fgmodels.hooks import install_hook, remove_hook
from tests.fault_injection import HOOK as FAULTS
from tests.test_engine import tiny_cfg


class Recorder:
    """A hook that records every micro-batch the loop trains on."""

    keys: dict[str, Any] = {}

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def before_step(self, trainer, images, labels) -> None:
        self.images.append(images.detach().clone())
        self.labels.append(labels.detach().clone())

    def after_loss(self, trainer, loss):
        return loss

    @property
    def sizes(self) -> list[int]:
        return [x.shape[0] for x in self.images]


class OomAfterFirstEpoch:
    """Simulated out-of-memory for micro-batches above ``limit``, from epoch 2 on."""

    keys: dict[str, Any] = {}

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def before_step(self, trainer, images, labels) -> None:
        if trainer.epochs_done >= 1 and images.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: micro-batch {images.shape[0]} > {self.limit})")

    def after_loss(self, trainer, loss):
        return loss


@contextmanager
def hooks(*installed) -> Iterator[None]:
    """Install hooks in this order (the first one sees a step first)."""
    for hook in installed:
        install_hook(hook)
    try:
        yield
    finally:
        for hook in installed:
            remove_hook(hook)


def test_accumulated_step_equals_one_full_batch_sgd_step(tmp_path: Path) -> None:
    """Batch 8 as 2 micro-batches of 4: after one optimiser step the weights equal
    one plain SGD step on the mean loss of all 8 images, computed here by hand."""
    lr = 0.5
    cfg = tiny_cfg(backbone="test_convnext",  # LayerNorm only: per-image, so splitting the batch changes nothing
                   opt="momentum", momentum=0.0, weight_decay=0.0, lr=lr, epochs=1,
                   batch_size=8, accum_steps=2, max_train_batches=1, device="cpu", amp="off")
    trainer = Trainer(cfg, tmp_path, progress=False)
    start = copy.deepcopy(trainer.model)
    seen = Recorder()
    with hooks(seen):
        trainer.train_epoch(1)
    assert seen.sizes == [4, 4]

    images, labels = torch.cat(seen.images), torch.cat(seen.labels)
    start.train()
    params = [p for p in start.parameters() if p.requires_grad]
    grads = torch.autograd.grad(start.training_step(images, labels).loss, params)
    expected = [p.detach() - lr * g for p, g in zip(params, grads)]
    after = [p.detach() for p in trainer.model.parameters() if p.requires_grad]
    moved = max(float((a - p.detach()).abs().max()) for a, p in zip(after, params))
    assert moved > 1e-3  # the step did change the weights, so equality below means something
    for got, want in zip(after, expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)


def test_out_of_memory_twice_doubles_accumulation_each_time(tmp_path: Path) -> None:
    """Micro-batch 16 fails, 8 fails, 4 fits: accumulation 1 -> 2 -> 4, same effective batch."""
    cfg = tiny_cfg(epochs=2, batch_size=16, max_train_batches=2, simulate_oom_above_batch=4)
    seen = Recorder()
    with hooks(seen, FAULTS):
        result = fit(cfg, tmp_path, progress=False)
    assert seen.sizes[:3] == [16, 8, 4]  # one attempt each, then only micro-batches of 4
    assert set(seen.sizes[2:]) == {4}
    assert [h["micro_batch"] for h in result.history] == [4, 4]
    assert [h["accum_steps"] for h in result.history] == [4, 4]
    assert [h["oom_retries"] for h in result.history] == [2, 2]
    steps_per_epoch = 2 * 4  # max_train_batches optimiser steps of 16 / 4 micro-batches each
    assert len(seen.sizes) == 2 + 2 * steps_per_epoch
    assert load_state(tmp_path / "checkpoint")["global_step"] == 2 * steps_per_epoch


def test_out_of_memory_in_a_later_epoch_restarts_it_from_the_last_checkpoint(tmp_path: Path) -> None:
    """An OOM in epoch 2 replays epoch 2 from the checkpoint of epoch 1 with half the
    micro-batch: the same as resuming that checkpoint by hand with accumulation 2."""
    cfg = tiny_cfg(epochs=3, batch_size=16, max_train_batches=2)
    with hooks(OomAfterFirstEpoch(limit=8)):
        got = fit(cfg, tmp_path / "oom", progress=False)
    assert [h["micro_batch"] for h in got.history] == [16, 8, 8]
    assert [h["accum_steps"] for h in got.history] == [1, 2, 2]
    assert load_state(tmp_path / "oom" / "checkpoint")["global_step"] == 2 * 1 + 2 * (2 * 2)

    class Stop(Exception):
        pass

    def stop_after_first(metrics, _ckpt):
        if metrics["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "first", on_epoch_end=stop_after_first, progress=False)
    by_hand = Trainer(cfg, tmp_path / "by_hand", progress=False)
    by_hand.resume(tmp_path / "first" / "checkpoint")
    assert (tmp_path / "by_hand" / "checkpoint" / "state.pt").is_file()  # a foreign checkpoint is copied in
    by_hand.accum_steps = 2
    want = by_hand.fit()
    assert [h["epoch"] for h in got.history] == [h["epoch"] for h in want.history] == [1, 2, 3]
    for mine, ref in zip(got.history, want.history):
        for key in ("train_loss", "val_acc", "val_loss"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), (mine["epoch"], key)


@pytest.mark.parametrize("progress", [False, True])
def test_nan_is_caught_within_log_every_steps(tmp_path: Path, fault_injection, progress: bool) -> None:
    every, nan_at, steps = 3, 4, 10  # NaN in 0-based step 4, checks after steps 3, 6, 9 and at the end
    cfg = tiny_cfg(epochs=1, max_train_batches=steps, log_every=every, inject_nan_at_step=nan_at)
    trainer = Trainer(cfg, tmp_path, progress=progress)
    with pytest.raises(TrialDiverged) as err:
        trainer.fit()
    caught = math.ceil((nan_at + 1) / every) * every
    assert caught == 6 and trainer.global_step == caught
    assert f"epoch 1 by step {caught}" in str(err.value)


def test_epochs_are_numbered_from_one_everywhere(tmp_path: Path) -> None:
    reported: list[tuple[dict, Path]] = []
    result = fit(tiny_cfg(epochs=3, max_train_batches=2), tmp_path, progress=False,
                 on_epoch_end=lambda m, ckpt: reported.append((dict(m), ckpt)))
    accs = [m["val_acc"] for m, _ in reported]
    assert [m["epoch"] for m, _ in reported] == [1, 2, 3]
    assert [m["improved"] for m, _ in reported] == [a > max(accs[:i], default=-1.0) for i, a in enumerate(accs)]
    best = accs.index(max(accs)) + 1  # the first epoch that reached the maximum
    assert result.best_epoch == best
    assert load_state(tmp_path / "best")["epoch"] == best
    state = load_state(tmp_path / "checkpoint")
    assert state["epochs_done"] == 3 and state["best_epoch"] == best
    resumed = Trainer(tiny_cfg(epochs=3, max_train_batches=2), tmp_path / "again", progress=False)
    resumed.resume(tmp_path / "checkpoint")
    assert resumed.start_epoch == 3 and resumed.best_epoch == best
