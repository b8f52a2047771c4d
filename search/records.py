"""What a finished (or interrupted) search holds, one :class:`TrialRecord` per
trial, read back from Ray's experiment folder. Everything downstream (tables,
plots, importance, the test evaluation) works from these records only.

A record's ``config`` is the one the trial resolved and reported (the content of
its ``trial_config.yaml``), never the searcher's proposal: what the leaderboard
shows, ``best_config.yaml`` retrains and the test evaluates is what really ran.
Under PBT a trial's config changes when it takes over another trial's weights;
the record then holds the config its best epoch trained with, and its mutable
knobs also show, as ``<key>_start`` (e.g. ``lr_start``), the value it started with.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search import trial_config
from search.plan import METRIC, MODE, SearchPlan
from search.spaces import SearchSpace

# Why a trial ended: each name written here once.
COMPLETED = "completed"  # ran every epoch
PRUNED = "pruned"  # the scheduler stopped it before its last epoch
DIVERGED = "diverged"  # the loss became NaN/inf: reported, not retried
ERRORED = "errored"  # raised (after Ray's retries)
UNFINISHED = "unfinished"  # still running or pending when the search was interrupted
STATUSES = (COMPLETED, PRUNED, DIVERGED, ERRORED, UNFINISHED)
RANKABLE = (COMPLETED, PRUNED)  # a model that diverged or crashed is not a configuration to retrain
STOPPED_BY_SCHEDULER = "stopped by the scheduler"


@dataclass
class TrialRecord:
    trial_id: str
    method: str
    config: dict[str, Any]  # the resolved fgmodels config the trial ran (its trial_config.yaml)
    knobs: dict[str, Any]  # the searched keys of this trial's method -> value (PBT: also <key>_start)
    curve: list[tuple[int, float]]  # (epoch, val_acc), epochs 1-based, one point each, diverged record excluded
    status: str
    best_val_acc: float = float("nan")
    best_epoch: int = 0  # 1-based
    epochs_run: int = 0
    message: str = ""
    checkpoint: Any = None  # ray.tune.Checkpoint of the best epoch (kept by CheckpointConfig)
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)  # fgmodels.cost.COST_KEYS -> value, once an epoch ran

    @property
    def ranked(self) -> bool:
        """May this trial be chosen as the best?"""
        return self.status in RANKABLE and not math.isnan(self.best_val_acc)


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


def cost_from_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The trial's test-time cost (:mod:`fgmodels.cost`): the last measured
    value of each key (a resumed trial measures again, on its new device)."""
    from fgmodels.cost import COST_KEYS

    cost: dict[str, float] = {}
    for row in rows:
        for key in COST_KEYS:
            value = row.get(key)
            if value is not None and not _isnan(value):
                cost[key] = float(value)
    return cost


def status_of(ray_status: str, diverged: bool, epochs_run: int, max_epochs: int,
              stopped: bool | None = None) -> str:
    """Why a trial ended. ``stopped``: whether the scheduler decided to stop it
    (its recorded decision). With a record, a trial is pruned iff the scheduler
    stopped it before its last epoch; None (no record) falls back to inference:
    a trial that ended early without error was stopped by the scheduler."""
    if ray_status == "ERROR":
        return ERRORED
    if diverged:
        return DIVERGED
    if epochs_run >= max_epochs:
        return COMPLETED
    if stopped:
        return PRUNED
    if ray_status == "TERMINATED":
        return PRUNED if stopped is None else COMPLETED
    return UNFINISHED


def config_at_epoch(rows: list[dict[str, Any]], epoch: int) -> dict[str, Any] | None:
    """The config that trained ``epoch``: the one carried by the latest (re)start
    report up to that epoch's last report (a trial reports its config at every
    start, so after a PBT exploit the rows carry the perturbed one)."""
    current, found = None, None
    for row in rows:
        current = trial_config.from_result(row) or current
        value = row.get("epoch")
        if value is not None and not _isnan(value) and int(value) == epoch and not _truthy(row.get("diverged")) \
                and row.get(METRIC) is not None and not _isnan(row.get(METRIC)):
            found = current
    return found


def make_record(trial_id: str, ray_status: str, ray_config: Mapping[str, Any], rows: list[dict[str, Any]],
                space: SearchSpace, max_epochs: int, stops: Mapping[str, Any] | None = None,
                saved_config: Mapping[str, Any] | None = None, show_start: bool = False) -> TrialRecord:
    """One trial's record. Its config is the one its best epoch trained with
    (from its reports), else ``saved_config`` (the trial's ``trial_config.yaml``)
    or the first config its reports carry; only a trial that never reported (it
    failed before its first epoch, and is never ranked) shows the searcher's
    proposal. ``stops``: the scheduler's recorded STOP decisions (trial id ->
    {"epoch", "scheduler"}), or None. ``show_start`` (PBT): each mutable knob
    also as ``<key>_start``, the value the trial started with."""
    start = dict(saved_config or trial_config.from_rows(rows) or _proposal(space, ray_config))
    method = start.get("method", "baseline")
    curve, diverged, message = curve_from_rows(rows)
    epochs_run = max((e for e, _ in curve), default=0)
    stopped = None if stops is None else trial_id in stops
    status = status_of(ray_status, diverged, epochs_run, max_epochs, stopped)
    best_epoch, best = max(curve, key=lambda p: (p[1], -p[0]), default=(0, float("nan")))
    config = dict(config_at_epoch(rows, best_epoch) or start) if curve else start
    try:
        keys = searched_keys(space, method)
        mutable = space.member(method).mutable if show_start else ()
    except Exception:  # a method the (edited) space no longer has: show no knobs
        keys, mutable = [], ()
    knobs: dict[str, Any] = {}
    for key in keys:
        knobs[key] = config.get(key)
        if key in mutable:
            knobs[f"{key}_start"] = start.get(key)
    return TrialRecord(trial_id=trial_id, method=method, config=config, knobs=knobs,
                       curve=curve, status=status, best_val_acc=best, best_epoch=best_epoch, epochs_run=epochs_run,
                       message=message, cost=cost_from_rows(rows))


def _proposal(space: SearchSpace, ray_config: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return space.names.decode(ray_config)
    except Exception:  # a config the space cannot read: keep what Ray stored
        return dict(ray_config)


def collect(plan: SearchPlan, space: SearchSpace, stops: Mapping[str, Any] | None = None) -> list[TrialRecord]:
    """Read every trial of the search from its experiment folder. ``stops``:
    ``search.stops.load_stop_decisions(plan.experiment_path)`` when the
    scheduler's decisions were recorded (None: inferred from the epochs run)."""
    import pyarrow.fs as pafs
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(plan.experiment_path, default_metric=METRIC, default_mode=MODE)
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        rows = frame.to_dict("records") if frame is not None else []
        saved = None if trial_config.from_rows(rows) else _saved_config(trial)
        record = make_record(trial.trial_id, trial.status, dict(trial.config), rows, space, plan.max_epochs,
                             stops=stops, saved_config=saved, show_start=plan.scheduler == "pbt")
        record.path = str(trial.path)
        if record.status == ERRORED:
            record.message = _error_text(analysis, trial, pafs)
        if record.ranked:
            record.checkpoint = _best_checkpoint(analysis, trial)
        records.append(record)
    return records


def _saved_config(trial: Any) -> dict[str, Any] | None:
    """``trial_config.yaml`` of the trial's latest checkpoint (for results that
    carry no reported config)."""
    try:
        checkpoint = trial.checkpoint
    except Exception:
        return None
    return trial_config.from_checkpoint(checkpoint) if checkpoint is not None else None


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
