"""Bounded disk use: full checkpoints only for trials that can still matter.

Each reported epoch leaves Ray a checkpoint folder holding the trial's whole
state (weights and optimiser state, ``state.pt``); with ConvNeXt-S that is
about 400 MB, and Ray keeps the best and the latest of every trial. A trial the
scheduler stopped (or that finished, or diverged) can never run again, so its
state is only worth keeping when it may be picked as the result: the top K
finished trials by best val_acc. :class:`CheckpointPruner` deletes the
``state.pt`` files of the other finished trials as soon as they end (their
``trial_config.yaml``, pictures and metrics stay). Running trials, and errored
ones (``--resume`` restarts them from their checkpoint), keep everything.

Before Ray starts, :func:`estimate_disk_bytes` bounds what the search can hold
at once, and :func:`check_free_space` refuses a local storage with less free
space than that.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ray import tune

from search.objective import METRIC, TIME_ATTR, rank_key

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"  # the trainer's full state inside a reported checkpoint
CHECKPOINTS_PER_TRIAL = 2  # Ray keeps the best and the latest of each trial
_FINISHED = "TERMINATED"  # Ray's status of a trial that will not run again (completed, stopped, diverged)


def checkpoint_bytes(cfg: dict[str, Any], num_classes: int = 200) -> int:
    """Size of one ``state.pt`` of ``cfg``, as the model side estimates it."""
    from fgmodels.memory import checkpoint_state_bytes

    return checkpoint_state_bytes(cfg, num_classes)


def estimate_disk_bytes(configs: list[dict[str, Any]], concurrent: int, keep: int, num_classes: int = 200,
                        per_trial: int = CHECKPOINTS_PER_TRIAL) -> int:
    """The most the search holds at once: the running trials' and the kept
    trials' checkpoints (``per_trial`` each: best and latest, more under PBT),
    sized by the largest config."""
    largest = max(checkpoint_bytes(c, num_classes) for c in configs)
    return largest * per_trial * (concurrent + keep)


def free_bytes(folder: str) -> int:
    """Free space of the file system that ``folder`` (or its nearest existing parent) is on."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(folder: str, need: int) -> str:
    """A line for the plan printout; raises ValueError when ``folder`` has less free space than ``need``."""
    free = free_bytes(folder)
    line = f"about {need / 2**30:.2f} GiB of checkpoints at most; {free / 2**30:.1f} GiB free at {folder}"
    if free < need:
        raise ValueError(f"--storage {folder} has {free / 2**30:.2f} GiB free but the search may keep "
                         f"{need / 2**30:.2f} GiB of checkpoints. Fix: free space, choose another --storage, "
                         f"lower --keep-checkpoints or --max-concurrent")
    return line


class CheckpointPruner(tune.Callback):
    """Deletes the full state of finished trials outside the top ``keep`` by best val_acc."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.pruned: set[str] = set()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Ray calls this before it marks ``trial`` TERMINATED: count it as finished.
        self.prune(trials, ending=trial)

    def prune(self, trials: list, ending: Any = None) -> None:
        done = [t for t in trials if t.status == _FINISHED or t is ending]
        finished = [t for t in done if t.trial_id not in self.pruned]
        ranked = sorted(done, key=_rank)
        kept = {t.trial_id for t in ranked[: self.keep]}
        for trial in finished:
            if trial.trial_id not in kept and trial.path:
                freed = delete_states(trial.path)
                self.pruned.add(trial.trial_id)
                log.info("trial %s: deleted %d checkpoint state file(s) (not in the top %d)", trial.trial_id,
                         freed, self.keep)


def _rank(trial: Any) -> tuple:
    result = trial.last_result or {}
    return rank_key(_best_score(trial), int(result.get(TIME_ATTR, 0) or 0), str(trial.trial_id))


def _best_score(trial: Any) -> float:
    """Best val_acc of a finished trial; a diverged trial can never be the result."""
    result = trial.last_result or {}
    if result.get("diverged"):
        return float("-inf")
    value = result.get("best_val_acc", result.get(METRIC, float("-inf")))
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def delete_states(trial_path: str) -> int:
    """Remove every ``checkpoint_*/state.pt`` below a trial folder (local or a
    bucket, through Ray's storage filesystem); returns how many went."""
    if "://" not in trial_path:
        removed = 0
        for state in Path(trial_path).glob(f"checkpoint_*/{STATE_FILE}"):
            os.remove(state)
            removed += 1
        return removed
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(trial_path)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    states = [i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(f"/{STATE_FILE}")]
    for path in states:
        fs.delete_file(path)
    return len(states)
