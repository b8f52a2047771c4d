"""Driver-side Ray Tune callbacks: W&B logging (one run per trial) and a short
progress printer.

The W&B callback runs in the driver process, not in one Ray actor per trial
(as Ray's ``WandbLoggerCallback`` does): on a small machine that saves a
process per trial, works identically offline, and lets it read the
visualisation PNGs that the trainable leaves in each checkpoint. The API key
is never read, stored or printed here; ``wandb`` finds it itself.
"""
from __future__ import annotations

import io
import logging
import netrc
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ray import tune

from search import trial_config
from search.records import ERRORED, STOPPED_BY_SCHEDULER, UNFINISHED, status_of
from search.trainable import VIZ_DIR, VIZ_EPOCH_FILE

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "fgvc-search"
# Ray's own bookkeeping in every result: not worth a W&B chart.
_SKIP_KEYS = {"done", "should_checkpoint", "timestamp", "pid", "date", "hostname", "node_ip",
              "trial_id", "experiment_tag", "checkpoint_dir_name", "time_since_restore",
              "iterations_since_restore", "time_this_iter_s", trial_config.TRIAL_CONFIG_KEY}


def wandb_logged_in() -> bool:
    """True when an API key is available (env var or netrc); never reveals it."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def default_wandb_mode() -> str:
    return "online" if wandb_logged_in() else "offline"


def run_id(group: str, trial_id: str) -> str:
    """The W&B run id of a trial: stable, so a resumed trial continues its run
    and a sweep can name the runs of a finished search."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{group}-{trial_id}")[:120]


class WandbTrialCallback(tune.Callback):
    """One W&B run per trial, grouped by the search name: the trial's resolved
    config, every reported numeric metric, and the best-epoch images. A run
    opens at the trial's first report, which carries the config the trial
    resolved (a trial that fails before reporting has no run; its error is in
    the leaderboard). Its summary carries what the W&B sweep page shows of a
    trial (:mod:`search.wandb_sweep`): ``best_val_acc``, ``epochs_run``,
    ``status`` (as the leaderboard names it) and the cost keys once measured
    (the last value of every logged metric)."""

    def __init__(self, mode: str, group: str, directory: str, project: str | None = None) -> None:
        if mode not in ("online", "offline"):
            raise ValueError(f"W&B mode must be online or offline, got {mode!r}")
        self.mode = mode
        self.group = group
        self.directory = str(directory)
        self.project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        self._runs: dict[str, Any] = {}
        self._viz_epoch: dict[str, int] = {}
        self._epochs: dict[str, int] = {}  # trial -> last epoch reported
        self._max_epochs: dict[str, int] = {}  # trial -> its config's epochs (the search's --max-epochs)
        self._diverged: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # Tuner pickles the run config: no live runs in it
        state = dict(self.__dict__)
        for key in ("_runs", "_viz_epoch", "_epochs", "_max_epochs", "_diverged"):
            state[key] = type(state[key])()
        return state

    # -- run lifecycle
    def _run(self, trial: Any, config: dict[str, Any] | None = None) -> Any:
        run = self._runs.get(trial.trial_id)
        if run is not None:
            return run
        import wandb

        Path(self.directory).mkdir(parents=True, exist_ok=True)
        config = {**(config or {}), "search": self.group, "trial_id": trial.trial_id}
        run = wandb.init(
            project=self.project, group=self.group, name=trial.trial_id, id=run_id(self.group, trial.trial_id),
            job_type="trial", dir=self.directory, mode=self.mode, config=config, resume="allow",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", disable_git=True, save_code=False,
                                    x_disable_stats=True, x_save_requirements=False),
        )
        run.define_metric("epoch")
        run.define_metric("*", step_metric="epoch")
        self._runs[trial.trial_id] = run
        return run

    def _finish(self, trial: Any, status: str, exit_code: int = 0) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            run.summary["status"] = status
            run.finish(exit_code=exit_code)

    def _status(self, trial: Any) -> str:
        """The leaderboard's status of a trial that ended without error (without
        the scheduler's record: one that ended early was stopped by it)."""
        epochs = self._epochs.get(trial.trial_id, 0)
        max_epochs = self._max_epochs.get(trial.trial_id, epochs)
        return status_of("TERMINATED", trial.trial_id in self._diverged, epochs, max_epochs)

    # -- Ray hooks
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        config = trial_config.from_result(result)
        run = self._run(trial, config)
        if config and "epochs" in config:
            self._max_epochs[trial.trial_id] = int(config["epochs"])
        row = {k: v for k, v in result.items()
               if k not in _SKIP_KEYS and isinstance(v, (int, float, bool)) and not isinstance(v, str)}
        if row:
            run.log(row)
        if result.get("diverged"):
            self._diverged.add(trial.trial_id)
        elif isinstance(result.get("epoch"), (int, float)):
            self._epochs[trial.trial_id] = int(result["epoch"])
            run.summary["epochs_run"] = self._epochs[trial.trial_id]

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        try:
            self._log_viz(trial, checkpoint)
        except Exception as err:  # images are a nicety: never break the search for them
            log.warning("could not log visualisation of trial %s: %s", trial.trial_id, err)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, self._status(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, ERRORED, exit_code=1)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial_id in list(self._runs):  # still running or paused: the search was interrupted
            run = self._runs.pop(trial_id)
            run.summary["status"] = UNFINISHED
            run.finish()

    # -- images
    def _log_viz(self, trial: Any, checkpoint: Any) -> None:
        import pyarrow.fs as pafs
        import wandb
        from PIL import Image

        fs, base = checkpoint.filesystem, f"{checkpoint.path}/{VIZ_DIR}"
        if fs.get_file_info(f"{base}/{VIZ_EPOCH_FILE}").type != pafs.FileType.File:
            return
        with fs.open_input_file(f"{base}/{VIZ_EPOCH_FILE}") as fh:
            epoch = int(fh.readall().decode().strip())
        if self._viz_epoch.get(trial.trial_id) == epoch:
            return
        images = {}
        for info in fs.get_file_info(pafs.FileSelector(base)):
            if info.base_name.endswith(".png"):
                with fs.open_input_file(info.path) as fh:
                    picture = Image.open(io.BytesIO(fh.readall()))
                    picture.load()
                images[f"viz/{info.base_name[:-4]}"] = wandb.Image(picture, caption=f"best epoch {epoch}")
        if images:
            self._run(trial).log({"epoch": epoch, **images})
            self._viz_epoch[trial.trial_id] = epoch


class ProgressPrinter(tune.Callback):
    """One readable line per epoch and per finished trial (Ray's own table is
    switched off: with dozens of fixed config keys it does not fit a terminal).

    ``stop_decisions`` (optional, called when a trial ends) returns the
    scheduler's recorded STOP decisions, trial id -> ``{"epoch", "scheduler"}``;
    without it a trial that ended early without error is reported as stopped by
    the scheduler at its last epoch."""

    def __init__(self, max_epochs: int, num_samples: int, metric: str = "val_acc",
                 stop_decisions: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None) -> None:
        self.max_epochs = max_epochs
        self.num_samples = num_samples
        self.metric = metric
        self.stop_decisions = stop_decisions
        self.finished = 0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[search] trial {trial.trial_id} started", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("diverged"):
            print(f"[search] trial {trial.trial_id} DIVERGED in epoch {result.get('diverged_epoch')}: "
                  f"{result.get('error_message', '')}", flush=True)
            return
        if self.metric in result:
            print(f"[search] trial {trial.trial_id} epoch {result.get('epoch')}/{self.max_epochs} "
                  f"{self.metric} {result[self.metric]:.4f} (best {result.get('best_val_acc', float('nan')):.4f})",
                  flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        print(f"[search] trial {trial.trial_id} {self.what_happened(trial)} "
              f"({self.finished}/{self.num_samples} finished in this run)", flush=True)

    def what_happened(self, trial: Any) -> str:
        last = trial.last_result or {}
        epochs = int(last.get("epoch", 0) or 0)
        stop = self._stop_of(trial.trial_id)
        if last.get("diverged"):
            return f"ended: diverged in epoch {last.get('diverged_epoch')}"
        if stop is not None and int(stop.get("epoch", 0)) < self.max_epochs:
            return f"{STOPPED_BY_SCHEDULER} ({stop.get('scheduler', '?')}) at epoch {stop.get('epoch')}"
        if epochs >= self.max_epochs:
            return f"completed {epochs} epochs"
        return f"{STOPPED_BY_SCHEDULER} at epoch {epochs}"

    def _stop_of(self, trial_id: str) -> Mapping[str, Any] | None:
        if self.stop_decisions is None:
            return None
        try:
            return self.stop_decisions().get(trial_id)
        except Exception as err:  # a progress line is never worth a failed search
            log.warning("could not read the scheduler's stop decisions: %s", err)
            return None

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        print(f"[search] trial {trial.trial_id} ERRORED (details in {trial.path}/error.txt)", flush=True)
