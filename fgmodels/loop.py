"""The training loop every method runs in, with or without Ray.

``Trainer.fit`` reads top to bottom: per epoch, train (``train_epoch``),
validate, keep the best, checkpoint, report. It owns everything that is not the
method (optimiser phases and LR schedule, mixed precision, gradient
accumulation, metrics, checkpoints, resume, divergence and out-of-memory
handling) and calls the method only through ``training_step`` / ``predict`` /
``on_epoch_start``. The trial's parts are built beforehand by
:func:`fgmodels.assembly.assemble_trial`.

Epochs are counted one way: epoch N is the N-th epoch of the run (1-based), in
metrics, messages, ``best_epoch`` and the best checkpoint; ``epochs_done``
counts completed epochs and is what a checkpoint records. Schedules (optimiser
phase, LR milestones, ``switch_epoch``) and ``model.on_epoch_start`` take the
number of epochs completed before the one starting (0 for the first).

Optimiser phases follow one training rule (:mod:`fgmodels.optim`): the second
phase starts at ``switch_epoch`` or, with ``switch: plateau``, once ``val_acc``
has stalled for ``switch_patience`` epochs; a plateau switch restarts from the
best epoch's weights (``best/``). Without a validation split the plateau
switch falls back to ``switch_epoch``.

Determinism: every epoch re-seeds all RNGs from ``(seed, epochs completed)``, so
a run resumed after epoch N replays epoch N + 1 exactly as an uninterrupted run
would (on the same device and library versions).

Host synchronisation inside a training step, i.e. where the CPU waits for the
GPU (everything else is queued asynchronously):

* the NaN/inf check ``float(loss_sum)`` every ``log_every`` steps (and the
  progress-bar loss printed with it), plus once at the end of the epoch;
* gholm (and any method using connected-component labelling): the convergence
  test of the labelling, one ``torch.equal`` per two propagation rounds; the
  number of rounds depends on the mask, so it cannot be known without looking;
* evaluation: one ``float`` of the accumulated correct count per pass.

No ``.item()``/``.cpu()`` per step; running sums stay on the device.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from fgmodels.assembly import assemble_trial, build_model
from fgmodels.checkpoint import (
    BEST_DIR, CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, STATE_FILE, copy_state, load_state, save_state,
)
from fgmodels.config import save_config
from fgmodels.evaluation import evaluate
from fgmodels.hooks import installed_hooks
from fgmodels.optim import Phase, build_optimizer, build_scheduler, phase_at, switch_point
from fgmodels.runtime import autocast_for, make_loader, micro_batch_size, seed_everything, to_device

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any], Path], None]


class TrialDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept on disk."""


@dataclass
class FitResult:
    best_val_acc: float
    best_epoch: int  # 1-based; 0 when no epoch completed
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


class Trainer:
    """State of one run; ``fit`` drives it. A class so that tests and the search
    can reach the pieces (model, data, loaders) without re-building them."""

    def __init__(self, cfg: dict[str, Any], workdir: str | Path, progress: bool = True) -> None:
        trial = assemble_trial(cfg)  # every input error is raised here, before any file is written
        self.cfg, self.device, self.data, self.model = trial.cfg, trial.device, trial.data, trial.model
        self.num_classes = self.data.num_classes
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.workdir / CONFIG_FILE)
        self.progress = progress
        self.accum_steps = int(self.cfg["accum_steps"])
        # val_fraction 0 (a final fit on the whole training split): no validation loader, no val metrics
        self.val_loader = (make_loader(self.data.val, self.micro_batch, False, self.cfg, self.device)
                           if len(self.data.val) else None)
        self.generator = torch.Generator()
        self.epochs_done = 0
        self.global_step = 0  # micro-batch steps over the whole run
        self.oom_retries = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_acc = -1.0
        self.best_epoch = 0  # 1-based number of the best epoch; 0 = none yet
        self.phase: Phase | None = None
        self.weights_phase = 0  # the optimiser phase the model's weights were last trained in
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None

    @property
    def start_epoch(self) -> int:
        """Epochs completed (after ``resume``: those in the checkpoint); the next epoch is ``start_epoch + 1``."""
        return self.epochs_done

    @property
    def validated(self) -> bool:
        """Whether a validation split judges the run (not so in a final fit on train + val)."""
        val = getattr(self.data, "val", None)
        return val is not None and len(val) > 0

    @property
    def micro_batch(self) -> int:
        return micro_batch_size(self.cfg["batch_size"], self.accum_steps)

    # ---------------------------------------------------------------- the loop
    def fit(self, on_epoch_end: EpochCallback | None = None) -> FitResult:
        """Train the remaining epochs; ``on_epoch_end(metrics, checkpoint_dir)`` runs after each."""
        while self.epochs_done < int(self.cfg["epochs"]):
            epoch = self.epochs_done + 1
            try:
                train = self.train_epoch(epoch)
            except torch.OutOfMemoryError:
                self._rewind_after_oom(epoch)  # the same epoch again, with half the micro-batch
                continue
            val = self._validate()
            improved = bool(val) and val["val_acc"] > self.best_val_acc
            if improved:
                self.best_val_acc, self.best_epoch = val["val_acc"], epoch
            metrics = {
                "epoch": epoch,
                **train,
                **val,
                "improved": improved,
                "lr": self.optimizer.param_groups[0]["lr"],
                "optimizer": self.phase.opt,
                "opt_phase": self.phase.index,
                "micro_batch": self.micro_batch,
                "accum_steps": self.accum_steps,
                "oom_retries": self.oom_retries,
            }
            self.history.append(metrics)
            self.epochs_done = epoch
            self._save(metrics)
            self._announce(metrics)
            if on_epoch_end is not None:
                on_epoch_end(metrics, self.workdir / CHECKPOINT_DIR)
        return FitResult(self.best_val_acc, self.best_epoch, self.history, self.workdir, self.cfg)

    def _validate(self) -> dict[str, float]:
        """``val_acc``, ``val_loss`` and ``best_val_acc`` so far; none without a validation split."""
        if self.val_loader is None:
            return {}
        val = evaluate(self.model, self.val_loader, self.device, self.cfg, self.cfg["max_eval_batches"])
        return {"val_acc": val["acc"], "val_loss": val["loss"], "best_val_acc": max(self.best_val_acc, val["acc"])}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch number ``epoch`` (1-based); returns its ``train_*`` metrics."""
        cfg, device, model = self.cfg, self.device, self.model
        done = epoch - 1  # schedules and seeds count the epochs completed before this one
        self._enter_phase(done)
        self.scheduler.step(done - self.phase.start_epoch)
        seed_everything(cfg["seed"], done)
        self.generator.manual_seed(int(cfg["seed"]) * 7919 + done)
        loader = make_loader(self.data.train, self.micro_batch, True, cfg, device, self.generator)
        model.train()
        model.on_epoch_start(done)
        hooks = installed_hooks()  # empty unless a test installed one
        accum = self.accum_steps
        check_every = max(1, int(cfg["log_every"]))
        max_batches = cfg["max_train_batches"]
        total = len(loader) if max_batches is None else min(len(loader), int(max_batches) * accum)
        bar = _progress(total, f"epoch {epoch}/{cfg['epochs']}", self.progress)
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device)
        seen = 0
        self.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        for i, (images, labels) in enumerate(loader):
            if i >= total:
                break
            images, labels = to_device(images, labels, device, cfg)
            for hook in hooks:
                hook.before_step(self, images, labels)
            with autocast_for(cfg, device):
                out = model.training_step(images, labels)
            loss = out.loss
            for hook in hooks:
                loss = hook.after_loss(self, loss)
            (loss / accum).backward()  # the mean over the full batch, summed over its micro-batches
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
            if (i + 1) % check_every == 0:
                self._check_finite(sums["loss"], epoch, i + 1)  # the one host sync, at the log interval
                if bar is not None:
                    bar.set_postfix(loss=f"{float(sums['loss']) / seen:.3f}")
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if seen == 0:
            raise ValueError("training loader is empty: the train split has fewer images than one batch. "
                             "Fix: lower batch_size or add training images.")
        self._check_finite(sums["loss"], epoch, total)
        metrics = {f"train_{k}": float(v) / seen for k, v in sums.items()}
        metrics["train_acc"] = float(correct) / seen
        metrics["train_images"] = seen  # images trained on this epoch (a final fit: the whole training split)
        metrics["train_images_per_s"] = seen / max(elapsed, 1e-9)
        metrics["train_time_s"] = elapsed
        return metrics

    # ---------------------------------------------------------------- optimiser phases
    def _phase_for(self, done: int) -> Phase:
        """The optimiser phase of the epoch after ``done`` completed ones."""
        return phase_at(self.cfg, done, switch_point(self.cfg, self.history[:done], self.validated))

    def _enter_phase(self, done: int, optimizer_state: dict | None = None) -> None:
        """Use the optimiser of the phase that the epoch after ``done`` completed epochs falls in."""
        phase = self._phase_for(done)
        if self.phase is not None and phase.index == self.phase.index and self.optimizer is not None:
            return
        if phase.index != self.weights_phase:
            log.info("epoch %d: switching optimiser to %s at lr %g (fresh state)", done + 1, phase.opt, phase.lr)
            if self.cfg.get("switch") == "plateau" and self.validated:
                self._restore_best()
            self.weights_phase = phase.index
        self.phase = phase
        self.optimizer = build_optimizer(self.model, self.cfg, phase, self.device)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, phase)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

    def _restore_best(self) -> None:
        """Load the best epoch's weights: a plateau switch restarts from them."""
        best = self.workdir / BEST_DIR
        if not (best / STATE_FILE).exists():
            log.warning("optimiser switch: no best weights at %s; continuing from the current weights", best)
            return
        self.model.load_state_dict(load_state(best, map_location=self.device)["model"])
        log.info("optimiser switch: restarting from the best weights (epoch %d)", self.best_epoch)

    # ---------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "phase": self.phase.index if self.phase else 0,
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "accum_steps": self.accum_steps,
            "oom_retries": self.oom_retries,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "history": json.dumps(self.history),
            "num_classes": self.num_classes,
            "class_names": list(self.data.class_names),
        }

    def _save(self, metrics: dict[str, Any]) -> None:
        save_state(self._state(), self.workdir / CHECKPOINT_DIR)
        if metrics["improved"]:
            save_state({"model": self.model.state_dict(), "epoch": metrics["epoch"], "val_acc": metrics["val_acc"],
                        "num_classes": self.num_classes}, self.workdir / BEST_DIR)
        with open(self.workdir / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(metrics) + "\n")

    def resume(self, checkpoint_dir: str | Path) -> None:
        """Continue from a checkpoint written by ``fit`` (this run's or a copy of one)."""
        state = load_state(checkpoint_dir, map_location=self.device)
        self.optimizer, self.phase = None, None  # rebuilt below (same phase) or at the next epoch
        self.model.load_state_dict(state["model"])
        self.accum_steps = int(state["accum_steps"])
        self.global_step = int(state["global_step"])
        self.oom_retries = int(state["oom_retries"])
        self.best_val_acc = float(state["best_val_acc"])
        self.epochs_done, self.best_epoch = _epoch_counts(state)
        self.history = json.loads(state["history"])
        self.weights_phase = int(state["phase"])
        if self._phase_for(self.epochs_done).index == self.weights_phase:
            self._enter_phase(self.epochs_done, state["optimizer"] or None)
        own = self.workdir / CHECKPOINT_DIR
        if Path(checkpoint_dir).resolve() != own.resolve():
            copy_state(checkpoint_dir, own)  # an out-of-memory rewind restarts from the run's own copy
        log.info("resumed from %s after epoch %d", checkpoint_dir, self.epochs_done)

    # ---------------------------------------------------------------- faults
    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        if math.isfinite(float(loss_sum)):
            return
        last = self.workdir / CHECKPOINT_DIR
        kept = (f"the last good checkpoint is kept at {last}" if (last / STATE_FILE).exists()
                else "no epoch had finished, so no checkpoint exists yet")
        raise TrialDiverged(
            f"training diverged: the loss became NaN/inf in epoch {epoch} by step {step} "
            f"(global step {self.global_step}, lr={self.phase.lr if self.phase else '?'}); {kept}. "
            f"Fix: lower the learning rate or set grad_clip."
        )

    def _rewind_after_oom(self, epoch: int) -> None:
        """Halve the micro-batch and double accumulation (the effective batch stays
        the same), then restart the epoch from the last checkpoint, or from
        scratch when no epoch has completed yet."""
        if self.micro_batch <= 1:
            raise torch.OutOfMemoryError(
                f"out of memory even with micro-batch 1 (batch_size={self.cfg['batch_size']}). "
                f"Fix: use a smaller backbone or img_size."
            )
        accum, retries = self.accum_steps * 2, self.oom_retries + 1
        log.warning("out of memory in epoch %d: retrying with micro-batch %d x %d accumulation steps",
                    epoch, micro_batch_size(self.cfg["batch_size"], accum), accum)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.epochs_done > 0:
            self.resume(self.workdir / CHECKPOINT_DIR)
        else:
            self.model = build_model(self.cfg, self.num_classes, self.device)
            self.optimizer, self.phase, self.global_step, self.weights_phase = None, None, 0, 0
        self.accum_steps, self.oom_retries = accum, retries

    def _announce(self, m: dict[str, Any]) -> None:
        total = self.cfg["epochs"]
        val = f"val_acc {m['val_acc']:.4f}" if "val_acc" in m else "no validation"
        if not self.progress:
            log.info("epoch %d/%d %s loss %.4f", m["epoch"], total, val, m["train_loss"])
        else:
            print(f"epoch {m['epoch']}/{total}: train_loss {m['train_loss']:.4f} train_acc {m['train_acc']:.3f} "
                  f"{val} ({m['train_images_per_s']:.1f} img/s)", flush=True)


def _epoch_counts(state: dict[str, Any]) -> tuple[int, int]:
    """(epochs completed, 1-based best epoch) of a checkpoint; checkpoints written
    before epochs were counted from 1 stored 0-based ``epoch`` / ``best_epoch``."""
    if "epochs_done" in state:
        return int(state["epochs_done"]), int(state["best_epoch"])
    return int(state["epoch"]) + 1, int(state["best_epoch"]) + 1


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
