"""The Ray Tune function trainable: one trial = one run of the shared training loop.

It knows nothing about models: it turns Ray's config into an fgmodels config,
runs :class:`fgmodels.engine.Trainer`, reports every epoch with a checkpoint,
resumes from ``tune.get_checkpoint()`` after an interruption, and turns a
diverged run into a final ``diverged`` record so the search goes on without a
Ray retry. The trial's config is decoded and resolved here, once: saved as
``trial_config.yaml`` in every checkpoint and carried by the first report
(see :mod:`search.trial_config`). If the method offers ``visualize``, the
images of the trial's best epoch so far are saved as PNGs inside the
checkpoint (``viz/``), where the W&B callback and the results step find them.
After its first epoch the trial measures its test-time cost once
(:mod:`fgmodels.cost`); every later report carries it, as a multi-objective
searcher requires.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

VIZ_DIR = "viz"
VIZ_EPOCH_FILE = "epoch.txt"
VIZ_IMAGES = 8  # images per visualisation grid
_REPORT_TYPES = (bool, int, float, str)


def train_trial(config: dict[str, Any], start_log_dir: str | None = None) -> None:
    """Ray function trainable (wrap with ``tune.with_parameters``)."""
    from ray import tune

    from fgmodels.data import require_local_root
    from fgmodels.engine import Trainer, TrialDiverged
    from search import trial_config
    from search.spaces import to_trial_config

    trial_id = tune.get_context().get_trial_id() or "local"
    # Ray runs each trial in its own working directory; the trial id keeps
    # the folder unique even when RAY_CHDIR_TO_TRIAL_DIR=0 shares the cwd.
    workdir = Path.cwd() / f"fit_{trial_id}"
    # Where the trial's config is born: decoded from the searcher's names and
    # resolved (by the Trainer) once; everything downstream reads this one.
    decoded = to_trial_config(config)
    require_local_root(decoded)  # a cluster node without the dataset is named before anything is read
    trainer = Trainer(decoded, workdir, progress=False)
    ckpt_dir = workdir / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    resolved = trial_config.save(trainer.cfg, ckpt_dir)  # travels in every checkpoint
    pending = {trial_config.TRIAL_CONFIG_KEY: trial_config.as_report(resolved)}  # rides on the first report

    def report(record: dict[str, Any], checkpoint: Any = None) -> None:
        record.update(pending)
        pending.clear()
        tune.report(record, checkpoint=checkpoint)

    node_id = _node_id()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as restored:
            trainer.resume(restored)
            _carry_viz(Path(restored), ckpt_dir)
    resumed_from = trainer.start_epoch  # epochs already in the checkpoint (0: from scratch)
    _log_start(start_log_dir, trial_id, trainer.start_epoch, checkpoint is not None, node_id)

    viz = _Visualizer(trainer)
    cost: dict[str, float] = {}  # measured once, after this run's first epoch; rides on every later report

    def on_epoch_end(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        epoch = int(metrics["epoch"])  # 1-based: epochs completed
        improved = metrics.get("improved")
        if improved is None:  # an engine that does not say it: its 0-based best_epoch tells
            improved = trainer.best_epoch == epoch - 1
        if improved:
            viz.save(checkpoint_dir / VIZ_DIR, epoch)
        record = {k: v for k, v in metrics.items() if isinstance(v, _REPORT_TYPES)}
        record["diverged"] = False
        record["node_id"] = node_id  # which cluster node ran this epoch (Ray adds node_ip, hostname)
        record["resumed_from_epoch"] = resumed_from
        if not cost:
            cost.update(_measure_cost(trainer))
        record.update(cost)
        report(record, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    try:
        trainer.fit(on_epoch_end)
    except TrialDiverged as err:
        # A final record, no checkpoint: the last good one is already reported.
        # val_acc 0 tells the searcher this region is bad; best_val_acc keeps
        # what the trial reached before it diverged. No "epoch" key: a scheduler
        # then ignores the record, so a crash never counts as a measurement.
        report({
            "diverged_epoch": trainer.start_epoch + 1,  # 1-based, the epoch that diverged
            "val_acc": 0.0,
            "best_val_acc": max(trainer.best_val_acc, 0.0),
            "diverged": True,
            "error_message": str(err),
            **(cost or _unmeasured()),
        })


def _measure_cost(trainer: Any) -> dict[str, float]:
    """Test-time cost of the trial's model (:mod:`fgmodels.cost`) on one
    validation batch as evaluation loads it; never fails the trial."""
    from fgmodels.cost import measure_cost
    from fgmodels.runtime import autocast_for, to_device

    if trainer.val_loader is None:  # a final fit has no validation split: no cost column either
        return _unmeasured()
    try:
        images, labels = next(iter(trainer.val_loader))  # as evaluation sees them (device, layout)
        images, _ = to_device(images, labels, trainer.device, trainer.cfg)
        return measure_cost(trainer.model, images, lambda: autocast_for(trainer.cfg, trainer.device))
    except Exception as err:  # a cost column is never worth a failed trial
        log.warning("test-time cost not measured: %s", err)
        return _unmeasured()


def _unmeasured() -> dict[str, float]:
    """NaN costs: every report carries the cost keys (a multi-objective searcher
    requires them in each result); records skip NaN."""
    from fgmodels.cost import COST_KEYS

    return dict.fromkeys(COST_KEYS, float("nan"))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _log_start(start_log_dir: str | None, trial_id: str, start_epoch: int, resumed: bool, node_id: str = "") -> None:
    """One line per (re)start of a trial, so a resumed search can prove that
    finished trials were not run again."""
    if not start_log_dir:
        return
    folder = Path(start_log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    line = {"trial_id": trial_id, "kind": "resume" if resumed else "scratch", "start_epoch": start_epoch,
            "pid": os.getpid(), "node_id": node_id, "time": time.time()}
    with open(folder / f"{trial_id}.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _carry_viz(restored: Path, ckpt_dir: Path) -> None:
    """Keep the best-so-far images when a trial resumes from a checkpoint."""
    src = restored / VIZ_DIR
    if src.is_dir() and src.resolve() != (ckpt_dir / VIZ_DIR).resolve():
        shutil.copytree(src, ckpt_dir / VIZ_DIR, dirs_exist_ok=True)


class _Visualizer:
    """Calls ``model.visualize`` on a fixed validation batch; switches itself
    off for methods that return nothing, and never fails the trial."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.enabled = True

    def save(self, folder: Path, epoch: int) -> list[Path]:
        if not self.enabled:
            return []
        try:
            images = self._images()
        except Exception as err:  # a dashboard picture is never worth a failed trial
            log.warning("visualize() failed, no images for this trial: %s", err)
            self.enabled = False
            return []
        if not images:
            self.enabled = False
            return []
        return save_image_grids(images, folder, epoch)

    def _images(self) -> dict[str, torch.Tensor]:
        tr = self.trainer
        dataset = tr.data.val
        count = min(VIZ_IMAGES, len(dataset))
        batch = [dataset[i] for i in range(count)]
        images = torch.stack([b[0] for b in batch]).to(tr.device)
        labels = torch.as_tensor([int(b[1]) for b in batch]).to(tr.device)
        was_training = tr.model.training
        tr.model.eval()
        try:
            out = tr.model.visualize(images, labels)
        finally:
            tr.model.train(was_training)
        return {k: v.detach().float().cpu() for k, v in (out or {}).items()}


def save_image_grids(images: dict[str, torch.Tensor], folder: Path, epoch: int) -> list[Path]:
    """One PNG grid per entry (N, 3, H, W in [0, 1]) plus the epoch they show."""
    from PIL import Image
    from torchvision.utils import make_grid

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, batch in images.items():
        if batch.ndim != 4 or batch.shape[1] not in (1, 3):
            log.warning("visualize() entry %r has shape %s, expected (N, 3, H, W): skipped", name, tuple(batch.shape))
            continue
        grid = make_grid(batch.clamp(0, 1), nrow=min(4, batch.shape[0]), padding=2)
        array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        path = folder / f"{_safe_name(name)}.png"
        Image.fromarray(array).save(path)
        written.append(path)
    (folder / VIZ_EPOCH_FILE).write_text(str(epoch))
    return written


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "image"
