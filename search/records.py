"""What a finished (or interrupted) search holds, one :class:`TrialRecord` per
trial, read back from Ray's experiment folder. Everything downstream (tables,
plots, importance, the test evaluation) works from these records only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from search.plan import METRIC, MODE, SearchPlan
from search.spaces import SearchSpace, to_trial_config

STATUSES = ("completed", "pruned", "diverged", "errored", "unfinished")


@dataclass
class TrialRecord:
    trial_id: str
    method: str
    config: dict[str, Any]  # plain fgmodels config
    knobs: dict[str, Any]  # the searched keys of this trial's method -> value
    curve: list[tuple[int, float]]  # (epoch, val_acc), one point per epoch, diverged record excluded
    status: str
    best_val_acc: float = float("nan")
    best_epoch: int = 0
    epochs_run: int = 0
    message: str = ""
    checkpoint: Any = None  # ray.tune.Checkpoint of the best epoch (kept by CheckpointConfig)
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ranked(self) -> bool:
        """May this trial be chosen as the best? (a model that diverged or
        crashed is not a configuration to retrain)"""
        return self.status in ("completed", "pruned") and not math.isnan(self.best_val_acc)


def searched_keys(space: SearchSpace, method: str) -> list[str]:
    return list(space.member(method).params)


def curve_from_rows(rows: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], bool, str]:
    """Per-epoch val_acc (last report of an epoch wins: a resumed trial may
    replay an epoch), whether the trial diverged, and its message."""
    by_epoch: dict[int, float] = {}
    diverged, message = False, ""
    for row in rows:
        if _truthy(row.get("diverged")):
            diverged, message = True, str(row.get("error_message") or "")
            continue
        epoch, value = row.get("epoch"), row.get(METRIC)
        if epoch is None or value is None or _isnan(epoch) or _isnan(value):
            continue
        by_epoch[int(epoch)] = float(value)
    return sorted(by_epoch.items()), diverged, message


def status_of(ray_status: str, diverged: bool, epochs_run: int, max_epochs: int) -> str:
    if ray_status == "ERROR":
        return "errored"
    if diverged:
        return "diverged"
    if epochs_run >= max_epochs:
        return "completed"
    if ray_status == "TERMINATED":
        return "pruned"  # stopped before max_epochs without error: ASHA's decision
    return "unfinished"


def make_record(trial_id: str, ray_status: str, ray_config: dict[str, Any], rows: list[dict[str, Any]],
                space: SearchSpace, max_epochs: int) -> TrialRecord:
    config = to_trial_config(ray_config)
    method = config.get("method", "baseline")
    curve, diverged, message = curve_from_rows(rows)
    epochs_run = max((e for e, _ in curve), default=0)
    status = status_of(ray_status, diverged, epochs_run, max_epochs)
    best_epoch, best = max(curve, key=lambda p: (p[1], -p[0]), default=(0, float("nan")))
    try:
        keys = searched_keys(space, method)
    except Exception:  # a method the (edited) space no longer has: show no knobs
        keys = []
    return TrialRecord(trial_id=trial_id, method=method, config=config, knobs={k: config.get(k) for k in keys},
                       curve=curve, status=status, best_val_acc=best, best_epoch=best_epoch, epochs_run=epochs_run,
                       message=message)


def collect(plan: SearchPlan, space: SearchSpace) -> list[TrialRecord]:
    """Read every trial of the search from its experiment folder."""
    import pyarrow.fs as pafs
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(plan.experiment_path, default_metric=METRIC, default_mode=MODE)
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        rows = frame.to_dict("records") if frame is not None else []
        record = make_record(trial.trial_id, trial.status, dict(trial.config), rows, space, plan.max_epochs)
        record.path = str(trial.path)
        if record.status == "errored":
            record.message = _error_text(analysis, trial, pafs)
        if record.ranked:
            record.checkpoint = _best_checkpoint(analysis, trial)
        records.append(record)
    return records


def _best_checkpoint(analysis: Any, trial: Any) -> Any:
    try:
        return analysis.get_best_checkpoint(trial, metric=METRIC, mode=MODE)
    except Exception:
        return None


def _error_text(analysis: Any, trial: Any, pafs: Any) -> str:
    fs = getattr(analysis, "_fs", None) or pafs.LocalFileSystem()
    try:
        with fs.open_input_stream(f"{trial.path}/error.txt") as fh:
            text = fh.read().decode(errors="replace").strip()
    except Exception:
        return "errored (no error.txt)"
    return text.splitlines()[-1][:300] if text else "errored"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value) and not _isnan(value)


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False
