"""The one training loop every method runs in, with or without Ray.

``fit`` owns everything that is not the method: data loaders, optimiser phases
and LR schedule, mixed precision, gradient accumulation, validation, metrics,
checkpoints, resume, divergence and out-of-memory handling. It calls the method
only through ``training_step`` / ``predict`` / ``on_epoch_start``.

Determinism: every epoch re-seeds all RNGs from ``(seed, epoch)``, so a run
resumed from the checkpoint of epoch ``e`` replays epoch ``e + 1`` exactly as an
uninterrupted run would (on the same device and library versions).

Speed options (config keys): ``amp`` (bf16 autocast; ``auto`` = on CUDA),
``channels_last`` (model and inputs NHWC), ``compile`` (``torch.compile`` of the
backbones' ``forward_features``/``forward_head``/``forward``, in place, so
checkpoint keys do not change), fused optimisers on CUDA (:mod:`fgmodels.optim`)
and ``pipeline: cache`` (uint8 pixel cache + augmentation on the device,
:mod:`fgmodels.data.gpu_augment`; ``pil`` = the torchvision DataLoader).

Host synchronisation inside a training step, i.e. where the CPU waits for the
GPU (everything else is queued asynchronously):

* the NaN/inf check ``float(loss_sum)`` every ``log_every`` steps (and the
  progress-bar loss printed with it), plus once at the end of the epoch;
* gholm (and any method using :func:`fgmodels.attention_ops.connected_components`):
  the convergence test of the connected-component labelling, one
  ``torch.equal`` per two propagation rounds. The number of rounds depends on
  the mask, so it cannot be known without looking; a few per step;
* evaluation: one ``float`` of the accumulated correct count per pass.

Avoidable ones were removed: no ``.item()``/``.cpu()`` per step; running sums
stay on the device; host->device copies of constants (``torch.tensor(..., device=)``)
are gone from the crop path; the cache pipeline moves batches through pinned
memory on a side stream.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from fgmodels.checkpoint import load_state, save_state
from fgmodels.config import resolve_config, save_config
from fgmodels.optim import Phase, build_optimizer, build_scheduler, phase_at
from fgmodels.registry import create_method

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any], Path], None]
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
METRICS_FILE = "metrics.jsonl"


class TrialDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept on disk."""


@dataclass
class FitResult:
    best_val_acc: float
    best_epoch: int
    history: list[dict[str, Any]]
    workdir: Path
    config: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path:
        return self.workdir / CHECKPOINT_DIR

    @property
    def best_dir(self) -> Path:
        return self.workdir / BEST_DIR


# ---------------------------------------------------------------- runtime bits
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here; use device=cpu or auto")
    return device


def autocast_for(cfg: dict[str, Any], device: torch.device):
    amp = cfg["amp"]
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use_bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int, epoch: int = 0) -> None:
    value = (int(seed) * 100_003 + int(epoch)) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def make_loader(dataset: Dataset, batch_size: int, train: bool, cfg: dict[str, Any],
                device: torch.device, generator: torch.Generator | None = None) -> DataLoader:
    """Batches of ``(images, labels)``; with ``pipeline: cache`` they come already on ``device``."""
    if cfg["pipeline"] == "cache":
        from fgmodels.data.gpu_augment import make_device_loader

        return make_device_loader(dataset, batch_size, train, cfg, device, generator)
    workers = int(cfg["workers"])
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,  # a batch of 1 breaks BatchNorm in train mode
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=generator,
    )


def compile_backbones(model: nn.Module) -> int:
    """``torch.compile`` the backbone(s) of a method in place; returns how many.

    Methods call ``backbone.forward_features`` / ``forward_head`` directly, which
    a ``torch.compile(module)`` wrapper would skip, and the wrapper would also
    rename every checkpoint key (``_orig_mod.``). So the bound methods are
    replaced on the instance instead: weights, keys and ``.backbone`` stay as
    they are. Looks at ``model.backbone`` and ``model.backbones`` (RA-CNN).
    """
    found = [getattr(model, "backbone", None)]
    found += list(getattr(model, "backbones", None) or [])
    count = 0
    for backbone in (b for b in found if isinstance(b, nn.Module)):
        names = [n for n in ("forward_features", "forward_head") if callable(getattr(backbone, n, None))]
        for name in names or ["forward"]:  # e.g. timm's features_only wrappers have only forward
            setattr(backbone, name, torch.compile(getattr(backbone, name)))
        count += 1
    if count == 0:
        log.warning("compile: %s has no `backbone`/`backbones` attribute; nothing was compiled", type(model).__name__)
    return count


def _attach_pixel_cache(data: Any, cfg: dict[str, Any]) -> None:
    if cfg["pipeline"] == "cache":  # one shared uint8 cache for all splits, built on first use
        from fgmodels.data.gpu_augment import attach_pixel_cache

        attach_pixel_cache(data, cfg)


# ---------------------------------------------------------------- evaluation
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, cfg: dict[str, Any],
             max_batches: int | None = None) -> dict[str, float]:
    """Accuracy and CE of ``model.predict`` over ``loader``."""
    model.eval()
    correct = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device)
    seen = 0
    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            images, labels = _to_device(images, labels, device, cfg)
            with autocast_for(cfg, device):
                logits = model.predict(images)
            logits = logits.detach().float()
            correct += (logits.argmax(1) == labels).sum()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
            seen += labels.numel()
    if seen == 0:
        raise ValueError("evaluation loader is empty: the split has no images")
    return {"acc": float(correct) / seen, "loss": float(loss_sum) / seen, "n": seen}


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, cfg: dict[str, Any]):
    images = images.to(device, non_blocking=True)
    if cfg["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


# ---------------------------------------------------------------- the trainer
class Trainer:
    """State of one run; ``fit`` drives it. Split out so tests and the search
    can reach the pieces (model, loaders) without re-building them."""

    def __init__(self, cfg: dict[str, Any], workdir: str | Path, progress: bool = True) -> None:
        from fgmodels.data import build_datasets

        self.cfg = resolve_config(cfg)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.device = pick_device(self.cfg["device"])
        seed_everything(self.cfg["seed"])
        self.data = build_datasets(self.cfg)
        _attach_pixel_cache(self.data, self.cfg)
        self.num_classes = self.data.num_classes
        self.accum_steps = int(self.cfg["accum_steps"])
        self.oom_retries = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_acc = -1.0
        self.best_epoch = -1
        self.start_epoch = 0
        self.phase: Phase | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.model = self._new_model()
        self.generator = torch.Generator()
        self.val_loader = make_loader(self.data.val, self.micro_batch, False, self.cfg, self.device)
        save_config(self.cfg, self.workdir / "config.yaml")

    # -- construction
    @property
    def micro_batch(self) -> int:
        return max(1, int(self.cfg["batch_size"]) // self.accum_steps)

    def _new_model(self) -> nn.Module:
        seed_everything(self.cfg["seed"])
        model = create_method(self.cfg["method"], self.num_classes, **self.cfg).to(self.device)
        if self.cfg["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        if self.cfg["compile"]:
            compile_backbones(model)
        return model

    def _enter_phase(self, epoch: int, optimizer_state: dict | None = None) -> None:
        phase = phase_at(self.cfg, epoch)
        if self.phase is not None and phase.index == self.phase.index and self.optimizer is not None:
            return
        if self.phase is not None and phase.index != self.phase.index:
            log.info("epoch %d: switching optimiser %s -> %s (fresh state)", epoch, self.phase.opt, phase.opt)
        self.phase = phase
        self.optimizer = build_optimizer(self.model, self.cfg, phase, self.device)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, phase)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

    # -- checkpoints
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "phase": self.phase.index if self.phase else 0,
            "epoch": epoch,
            "global_step": self.global_step,
            "accum_steps": self.accum_steps,
            "oom_retries": self.oom_retries,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "history": json.dumps(self.history),
            "num_classes": self.num_classes,
            "class_names": list(self.data.class_names),
        }

    def resume(self, checkpoint_dir: str | Path) -> None:
        state = load_state(checkpoint_dir, map_location=self.device)
        self.accum_steps = int(state["accum_steps"])
        self.model.load_state_dict(state["model"])
        self.global_step = int(state["global_step"])
        self.oom_retries = int(state["oom_retries"])
        self.best_val_acc = float(state["best_val_acc"])
        self.best_epoch = int(state["best_epoch"])
        self.history = json.loads(state["history"])
        self.start_epoch = int(state["epoch"]) + 1
        saved_phase = int(state["phase"])
        if phase_at(self.cfg, self.start_epoch).index == saved_phase:
            self._enter_phase(self.start_epoch, state["optimizer"] or None)
        log.info("resumed from %s at epoch %d", checkpoint_dir, self.start_epoch)

    # -- one epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, device, model = self.cfg, self.device, self.model
        self.generator.manual_seed(int(cfg["seed"]) * 7919 + epoch)
        loader = make_loader(self.data.train, self.micro_batch, True, cfg, device, self.generator)
        model.train()
        model.on_epoch_start(epoch)
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device)
        seen = 0
        accum = self.accum_steps
        max_batches = cfg["max_train_batches"]
        total = len(loader) if max_batches is None else min(len(loader), int(max_batches) * accum)
        bar = _progress(total, f"epoch {epoch + 1}/{cfg['epochs']}", self.progress)
        self.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        for i, (images, labels) in enumerate(loader):
            if i >= total:
                break
            images, labels = _to_device(images, labels, device, cfg)
            limit = cfg["simulate_oom_above_batch"]
            if limit is not None and images.shape[0] > int(limit):
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory (simulated: micro-batch {images.shape[0]} > {limit})"
                )
            with autocast_for(cfg, device):
                out = model.training_step(images, labels)
            loss = out.loss
            if cfg["inject_nan_at_step"] is not None and self.global_step == int(cfg["inject_nan_at_step"]):
                loss = loss * float("nan")
            (loss / accum).backward()
            if (i + 1) % accum == 0 or i + 1 == total:
                if cfg["grad_clip"]:
                    nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            # running sums stay on the device: no host sync inside the step
            sums["loss"] = sums.get("loss", 0) + loss.detach().float() * labels.numel()
            for name, value in out.branch_losses.items():
                sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0) + value.detach().float() * labels.numel()
            if out.logits is not None:
                correct += (out.logits.argmax(1) == labels).sum()
            seen += labels.numel()
            self.global_step += 1
            if bar is not None:
                bar.update(1)
                if (i + 1) % max(1, int(cfg["log_every"])) == 0:
                    self._check_finite(sums["loss"], epoch, i)  # the one sync, at log interval
                    bar.set_postfix(loss=f"{float(sums['loss']) / seen:.3f}")
        elapsed = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if seen == 0:
            raise ValueError("training loader is empty: the train split has fewer images than one batch")
        self._check_finite(sums["loss"], epoch, total - 1)
        metrics = {f"train_{k}": float(v) / seen for k, v in sums.items()}
        metrics["train_acc"] = float(correct) / seen
        metrics["train_images_per_s"] = seen / max(elapsed, 1e-9)
        metrics["train_time_s"] = elapsed
        return metrics

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        if not math.isfinite(float(loss_sum)):
            last = self.workdir / CHECKPOINT_DIR
            kept = f"the last good checkpoint is kept at {last}" if (last / "state.pt").exists() else "no epoch had finished, so no checkpoint exists yet"
            raise TrialDiverged(
                f"training diverged: the loss became NaN/inf in epoch {epoch + 1} by step {step + 1} "
                f"(lr={self.phase.lr if self.phase else '?'}); {kept}. Lower the learning rate or set grad_clip."
            )

    def _rewind_after_oom(self, epoch: int) -> None:
        """Halve the micro-batch, double accumulation, restart the epoch from the
        last checkpoint (or from scratch), so the effective batch is unchanged."""
        if self.micro_batch <= 1:
            raise torch.OutOfMemoryError(
                f"out of memory even with micro-batch 1 (batch_size={self.cfg['batch_size']}); "
                f"use a smaller backbone or img_size"
            )
        self.accum_steps *= 2
        self.oom_retries += 1
        log.warning("out of memory in epoch %d: retrying with micro-batch %d x %d accumulation steps",
                    epoch + 1, self.micro_batch, self.accum_steps)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        last = self.workdir / CHECKPOINT_DIR
        accum, retries = self.accum_steps, self.oom_retries
        self.optimizer, self.phase = None, None
        if epoch > 0 and (last / "state.pt").exists():
            self.resume(last)
        else:
            self.model = self._new_model()
            self.global_step, self.history = 0, []
            self.best_val_acc, self.best_epoch = -1.0, -1
            self._enter_phase(epoch)
        self.accum_steps, self.oom_retries = accum, retries

    # -- the loop
    def fit(self, on_epoch_end: EpochCallback | None = None) -> FitResult:
        cfg = self.cfg
        epoch = self.start_epoch
        while epoch < int(cfg["epochs"]):
            self._enter_phase(epoch)
            self.scheduler.step(epoch - self.phase.start_epoch)
            seed_everything(cfg["seed"], epoch)
            try:
                train_metrics = self.train_epoch(epoch)
            except torch.OutOfMemoryError:
                self._rewind_after_oom(epoch)  # same epoch again, smaller micro-batch
                continue
            val = evaluate(self.model, self.val_loader, self.device, cfg, cfg["max_eval_batches"])
            improved = val["acc"] > self.best_val_acc
            if improved:
                self.best_val_acc, self.best_epoch = val["acc"], epoch
            metrics = {
                "epoch": epoch + 1,
                **train_metrics,
                "val_acc": val["acc"],
                "val_loss": val["loss"],
                "best_val_acc": self.best_val_acc,
                "lr": self.optimizer.param_groups[0]["lr"],
                "optimizer": self.phase.opt,
                "micro_batch": self.micro_batch,
                "accum_steps": self.accum_steps,
                "oom_retries": self.oom_retries,
            }
            self.history.append(metrics)
            ckpt = self.workdir / CHECKPOINT_DIR
            save_state(self._state(epoch), ckpt)
            if improved:
                save_state({"model": self.model.state_dict(), "epoch": epoch, "val_acc": val["acc"],
                            "num_classes": self.num_classes}, self.workdir / BEST_DIR)
            with open(self.workdir / METRICS_FILE, "a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            if not self.progress:
                log.info("epoch %d/%d val_acc %.4f loss %.4f", epoch + 1, cfg["epochs"], val["acc"], train_metrics["train_loss"])
            else:
                print(f"epoch {epoch + 1}/{cfg['epochs']}: train_loss {train_metrics['train_loss']:.4f} "
                      f"train_acc {train_metrics['train_acc']:.3f} val_acc {val['acc']:.3f} "
                      f"({train_metrics['train_images_per_s']:.1f} img/s)", flush=True)
            if on_epoch_end is not None:
                on_epoch_end(metrics, ckpt)
            epoch += 1
            self.start_epoch = epoch
        return FitResult(self.best_val_acc, self.best_epoch, self.history, self.workdir, cfg)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def fit(cfg: dict[str, Any], workdir: str | Path, on_epoch_end: EpochCallback | None = None,
        resume_from: str | Path | None = None, progress: bool = True) -> FitResult:
    """Train one configuration. ``on_epoch_end(metrics, checkpoint_dir)`` is called
    after every epoch (the Ray trainable reports from it); ``resume_from`` is a
    checkpoint directory written by an earlier ``fit``."""
    trainer = Trainer(cfg, workdir, progress=progress)
    if resume_from is not None:
        trainer.resume(resume_from)
    return trainer.fit(on_epoch_end)


def evaluate_checkpoint(checkpoint_dir: str | Path, cfg: dict[str, Any], split: str = "test") -> dict[str, float]:
    """Evaluate saved weights on a split; the search calls this ONCE on the test
    split for the chosen configuration."""
    from fgmodels.data import build_datasets

    cfg = resolve_config(cfg)
    device = pick_device(cfg["device"])
    data = build_datasets(cfg)
    _attach_pixel_cache(data, cfg)
    state = load_state(checkpoint_dir, map_location=device)
    model = create_method(cfg["method"], data.num_classes, **cfg).to(device)
    model.load_state_dict(state["model"])
    dataset = {"test": data.test, "val": data.val}[split]
    loader = make_loader(dataset, int(cfg["batch_size"]), False, cfg, device)
    return evaluate(model, loader, device, cfg)
