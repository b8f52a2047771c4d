"""Train one configuration: the entry point the CLI, the Ray trainable and the
benchmarks use. The work is split by job:

* :mod:`fgmodels.assembly` builds a trial (config, device, data, model) and
  raises every input error before any training;
* :mod:`fgmodels.loop` is the training loop (``Trainer``): epochs, steps,
  validation, checkpoints, resume, divergence and out-of-memory handling;
* :mod:`fgmodels.evaluation` measures accuracy, also from saved weights;
* :mod:`fgmodels.runtime` holds device, precision, seeding and loader rules;
* :mod:`fgmodels.hooks` lets tests inject faults without touching the loop.

Speed options (config keys): ``amp`` (bf16 autocast; ``auto`` = on CUDA),
``channels_last`` (model and inputs NHWC), ``compile`` (``torch.compile`` of the
backbones' ``forward_features``/``forward_head``/``forward``, in place, so
checkpoint keys do not change), fused optimisers on CUDA (:mod:`fgmodels.optim`)
and ``pipeline: cache`` (uint8 pixel cache + augmentation on the device,
:mod:`fgmodels.data.gpu_augment`; ``pil`` = the torchvision DataLoader).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fgmodels.assembly import Trial, assemble_trial, build_model
from fgmodels.checkpoint import BEST_DIR, CHECKPOINT_DIR, METRICS_FILE
from fgmodels.evaluation import evaluate, evaluate_checkpoint
from fgmodels.loop import EpochCallback, FitResult, Trainer, TrialDiverged
from fgmodels.runtime import (
    autocast_for, compile_backbones, make_loader, micro_batch_size, pick_device, seed_everything, to_device,
)

_to_device = to_device  # the name benchmarks/bench_speed.py imports

__all__ = [
    "BEST_DIR", "CHECKPOINT_DIR", "METRICS_FILE", "EpochCallback", "FitResult", "Trainer", "Trial", "TrialDiverged",
    "assemble_trial", "autocast_for", "build_model", "compile_backbones", "evaluate", "evaluate_checkpoint", "fit",
    "make_loader", "micro_batch_size", "pick_device", "seed_everything", "to_device",
]


def fit(cfg: dict[str, Any], workdir: str | Path, on_epoch_end: EpochCallback | None = None,
        resume_from: str | Path | None = None, progress: bool = True) -> FitResult:
    """Train one configuration. ``on_epoch_end(metrics, checkpoint_dir)`` is called
    after every epoch (the Ray trainable reports from it; ``metrics["epoch"]`` is
    1-based and ``metrics["improved"]`` says whether it set a new best val_acc);
    ``resume_from`` is a checkpoint directory written by an earlier ``fit``."""
    trainer = Trainer(cfg, workdir, progress=progress)
    if resume_from is not None:
        trainer.resume(resume_from)
    return trainer.fit(on_epoch_end)
