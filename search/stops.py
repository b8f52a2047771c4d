"""Why a trial ended early, written down by the scheduler that decided it.

Ray's trial state says only TERMINATED, whether a trial ran its whole budget
or a scheduler stopped it at a rung. Re-inferring the reason later ("fewer
epochs than the budget, so it was pruned") ties every reader to one
scheduler's logic. Instead the chosen Ray scheduler is wrapped in a
:class:`RecordingScheduler` that delegates every decision and writes each STOP
that ends a trial before its last epoch (also the stops it makes through the
controller, as HyperBand does for paused trials) to ``scheduler_stops.json`` in the
experiment folder, which :func:`load_stop_decisions` reads back. The file is
replaced atomically and merged with what earlier runs of the same search
wrote, so it survives ``--resume``.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ray.tune.schedulers import TrialScheduler

from search import storage
from search.objective import TIME_ATTR

log = logging.getLogger(__name__)

STOPS_FILE = "scheduler_stops.json"


class RecordingScheduler(TrialScheduler):
    """Delegates to ``inner`` and records its early STOP decisions.

    A STOP at the trial's last epoch (``last_epoch``) is not recorded: the
    trial ends there anyway, and such a trial completed its budget."""

    def __init__(self, inner: TrialScheduler, name: str, last_epoch: int, experiment_path: str) -> None:
        # TrialScheduler.__init__ only tags usage statistics; the inner scheduler did that.
        self.inner = inner
        self.name = name
        self.last_epoch = last_epoch
        self.experiment_path = experiment_path  # used when a trial does not say where its experiment is
        self._stops: dict[str, dict[str, Any]] = {}
        self._merged = False  # stops written by an earlier run of this search read in (once per process)?

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_merged": False}  # a restored copy re-reads the file first

    def __getattr__(self, name: str) -> Any:  # anything else a caller asks of the real scheduler
        if name.startswith("__") or name in ("inner", "_stops", "_merged"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ---------------------------------------------------------- the decisions that are recorded
    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = self.inner.on_trial_result(self._watching(tune_controller), trial, result)
        self._merge(trial)
        if str(trial.trial_id) in self._stops:
            # Stopped before an interruption that came before Ray saved the trial as ended:
            # the written decision stands, so the record and the trial agree.
            return TrialScheduler.STOP
        if decision == TrialScheduler.STOP:
            self._record(trial, result.get(TIME_ATTR))
        return decision

    def _record(self, trial: Any, epoch: Any) -> None:
        """Write down a stop of ``trial`` after ``epoch`` if that is before its last epoch."""
        if epoch is None or int(epoch) >= self.last_epoch or str(trial.trial_id) in self._stops:
            return
        self._merge(trial)
        fs, experiment = _where(trial, self.experiment_path)
        self._stops[str(trial.trial_id)] = {"epoch": int(epoch), "scheduler": self.name}
        storage.write_text_atomic(fs, f"{experiment}/{STOPS_FILE}", json.dumps(self._stops, indent=1, sort_keys=True))

    def _merge(self, trial: Any) -> None:
        if not self._merged:  # once per process: what earlier runs of this search decided
            fs, experiment = _where(trial, self.experiment_path)
            self._stops = {**_read(fs, f"{experiment}/{STOPS_FILE}"), **self._stops}
            self._merged = True

    def _watching(self, tune_controller: Any) -> Any:
        """The controller as the inner scheduler sees it: a scheduler such as
        HyperBand also stops other (paused) trials by calling ``stop_trial`` on it."""
        return _StopWatch(tune_controller, self) if tune_controller is not None else None

    # ---------------------------------------------------------- plain delegation
    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.inner.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(self._watching(tune_controller), trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_error(self._watching(tune_controller), trial)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self.inner.on_trial_complete(self._watching(tune_controller), trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_remove(self._watching(tune_controller), trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        return self.inner.choose_trial_to_run(self._watching(tune_controller))

    def debug_string(self) -> str:
        return f"{self.inner.debug_string()} (early stops recorded in {STOPS_FILE})"

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)


class _StopWatch:
    """A tune controller that records each trial the inner scheduler stops
    through it (at the epoch of the trial's last result), then stops it."""

    def __init__(self, controller: Any, recorder: RecordingScheduler) -> None:
        self._controller = controller
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:  # everything else is the real controller's
        if name.startswith("__") or name in ("_controller", "_recorder"):
            raise AttributeError(name)
        return getattr(self._controller, name)

    def stop_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        self._recorder._record(trial, (getattr(trial, "last_result", None) or {}).get(TIME_ATTR))
        return self._controller.stop_trial(trial, *args, **kwargs)


def _where(trial: Any, fallback: str) -> tuple[Any, str]:
    """(filesystem, experiment folder) where Ray keeps this trial's experiment
    now: after a --resume of a moved folder that is the new place."""
    context = getattr(trial, "storage", None)
    fs = getattr(context, "storage_filesystem", None)
    if fs is not None:
        return fs, context.experiment_fs_path
    return storage.filesystem(fallback)


def _read(fs: Any, path: str) -> dict[str, dict[str, Any]]:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return {}
    with fs.open_input_stream(path) as fh:
        text = fh.read().decode()
    try:
        raw = json.loads(text)
        return {str(t): {"epoch": int(d["epoch"]), "scheduler": str(d["scheduler"])} for t, d in raw.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("%s is not a stop record (%s); ignoring it", path, err)
        return {}


def load_stop_decisions(experiment_path: str) -> dict[str, dict[str, Any]]:
    """trial_id -> {"epoch": the epoch after which the scheduler stopped it,
    "scheduler": its name}, for every trial a scheduler ended early."""
    fs, path = storage.filesystem(experiment_path)
    return _read(fs, f"{path}/{STOPS_FILE}")
