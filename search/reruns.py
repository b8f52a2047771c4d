"""Fixed configurations run as Ray Tune trials of the search's own trainable,
in their own experiment folder under the search folder: the seed re-runs of
the top trials (``reruns/``, here) and the final fit (``final_fit/``, see
:mod:`search.final_fit`).

They are trials like the search's: same trainable, resources, retries, trial
logs, W&B group and progress lines, checkpoints every epoch (Ray keeps the
latest), and ``--resume`` continues an interrupted set from its saved state
(:func:`run_fixed` restores the folder when Ray can). A small searcher hands
Ray the configurations in order; a stopper ends a re-run at the epoch its
original trial reached.

Seed re-runs (``--rerun-top K --rerun-seeds S``): the top K trials by best
val_acc are trained again with S more seeds (``seed`` + 1 .. + S), on the same
train/val split (``split_seed`` is not the training seed) and to the same
number of epochs; each configuration then has a seed mean and sd of its best
val_acc (:mod:`search.seeds`), the winner is the best seed mean.
"""
from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from search.objective import METRIC
from search.plan import SearchPlan
from search.records import TrialRecord, curve_from_rows
from search.seeds import SeedStats

RERUNS_DIR = "reruns"


class Interrupted(Exception):
    """Ctrl-C stopped a set of fixed runs; Ray saved its state for ``--resume``."""


def config_key(cfg: Mapping[str, Any]) -> str:
    """One configuration's identity (for the stopper and for matching trials back)."""
    return json.dumps(dict(cfg), sort_keys=True, default=str)


def fixed_config(cfg: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A trial's resolved config to run again: the runtime keys it decided for its
    own device are decided again (``auto``) wherever the new trial runs."""
    from fgmodels.auto import AUTO_KEYS

    return {**cfg, **{k: "auto" for k in AUTO_KEYS}, **changes}


class FixedConfigs(Searcher):
    """Hands Ray the given configurations, each once, in order."""

    def __init__(self, configs: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.configs = [dict(c) for c in configs]
        self.given = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return dict(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the configurations are fixed."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump({"configs": self.configs, "given": self.given}, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            state = pickle.load(fh)
        self.configs, self.given = state["configs"], state["given"]


class StopAtEpoch(Stopper):
    """Ends each trial after the epoch its configuration names (config key -> epochs)."""

    def __init__(self, epochs: Mapping[str, int]) -> None:
        self.epochs = dict(epochs)

    def __call__(self, trial_id: str, result: dict) -> bool:
        target = self.epochs.get(config_key(result.get("config") or {}))
        return target is not None and int(result.get("epoch") or 0) >= target

    def stop_all(self) -> bool:
        return False


class FixedRunProgress(tune.Callback):
    """One line per epoch and per finished run, labelled by the set they belong to."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.finished = label, total, 0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{self.label}] trial {trial.trial_id} started (seed {trial.config.get('seed')})", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        shown = METRIC if METRIC in result else "train_acc"
        print(f"[{self.label}] trial {trial.trial_id} epoch {result['epoch']}/{trial.config.get('epochs')} "
              f"{shown} {result.get(shown, float('nan')):.4f}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        print(f"[{self.label}] trial {trial.trial_id} ended ({self.finished}/{self.total})", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        print(f"[{self.label}] trial {trial.trial_id} ERRORED (details in {trial.path}/error.txt)", flush=True)


@dataclass
class FixedRun:
    """One finished fixed run, read back from its experiment folder."""

    trial_id: str
    config: dict[str, Any]  # as given to Ray
    status: str  # Ray's
    curve: list[tuple[int, float]]  # (epoch, val_acc); empty without validation
    rows: list[dict[str, Any]] = field(default_factory=list)  # every report
    checkpoint: Any = None  # the latest (the last epoch's)
    diverged: bool = False

    @property
    def best_val_acc(self) -> float:
        return max((v for _, v in self.curve), default=float("nan"))

    @property
    def epochs_run(self) -> int:
        return max((int(r["epoch"]) for r in self.rows if _number(r.get("epoch"))), default=0)


def _number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _callbacks(plan: SearchPlan, label: str, total: int) -> list[Any]:
    from search.callbacks import WandbTrialCallback
    from search.failures import ConfigErrorsEndTrials

    callbacks: list[Any] = [ConfigErrorsEndTrials(), FixedRunProgress(label, total)]
    if plan.wandb != "off":
        callbacks.append(WandbTrialCallback(plan.wandb, plan.name, str(plan.local_dir)))
    return callbacks


def run_fixed(plan: SearchPlan, folder: str, configs: Sequence[Mapping[str, Any]], label: str,
              stop_epochs: Mapping[str, int] | None = None) -> list[FixedRun]:
    """Run ``configs`` as trials in ``<search>/<folder>`` (continuing that folder
    when it holds an interrupted set), one result per config, in order.
    Raises :class:`Interrupted` after Ctrl-C."""
    from search.tuner import fit_until_interrupted, trainable_for, trial_dirname, trial_name

    path = f"{plan.experiment_path.rstrip('/')}/{folder}"
    trainable = trainable_for(plan, path)
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                   restart_errored=False)
        print(f"[{label}] resuming {path}", flush=True)
    else:
        run_config = tune.RunConfig(
            name=folder, storage_path=plan.experiment_path, callbacks=_callbacks(plan, label, len(configs)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest: resume, and a final fit's weights
            failure_config=tune.FailureConfig(max_failures=plan.max_failures, fail_fast=False),
            stop=StopAtEpoch(stop_epochs) if stop_epochs else None, verbose=0, log_to_file=True)
        tune_config = tune.TuneConfig(search_alg=FixedConfigs(configs), num_samples=len(configs),
                                      max_concurrent_trials=plan.max_concurrent, trial_dirname_creator=trial_dirname,
                                      trial_name_creator=trial_name)
        tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
        print(f"[{label}] starting {len(configs)} run(s) in {path}", flush=True)
    if fit_until_interrupted(tuner):
        raise Interrupted(f"{label} interrupted; its state is saved in {path}")
    return read_runs(path, configs)


def read_runs(path: str, configs: Sequence[Mapping[str, Any]]) -> list[FixedRun]:
    """The runs of ``path``, in the order of ``configs``."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(path)
    frames = analysis.trial_dataframes
    by_key = {}
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        rows = frame.to_dict("records") if frame is not None else []
        curve, diverged, _ = curve_from_rows(rows)
        try:
            checkpoint = trial.checkpoint
        except Exception:  # no checkpoint was ever reported
            checkpoint = None
        by_key[config_key(trial.config)] = FixedRun(trial.trial_id, dict(trial.config), trial.status, curve, rows,
                                                    checkpoint, diverged)
    missing = [c for c in configs if config_key(c) not in by_key]
    if missing:
        raise RuntimeError(f"{path} holds no run of {len(missing)} of its {len(configs)} configurations. "
                           f"Fix: delete that folder and run --resume again to start the runs afresh")
    return [by_key[config_key(c)] for c in configs]


# ---------------------------------------------------------------- seed re-runs of the top trials
def rerun_plan(records: Sequence[TrialRecord], top: int, seeds: int) -> list[tuple[TrialRecord, dict[str, Any]]]:
    """(original trial, config to run) for each extra seed of each of the ``top``
    rankable trials (best first, by the search's ranking)."""
    from search.results import rank

    chosen = [r for r in rank(list(records)) if r.ranked][:top]
    return [(r, fixed_config(r.config, seed=int(r.config["seed"]) + j)) for r in chosen for j in range(1, seeds + 1)]


def seed_reruns(plan: SearchPlan, records: Sequence[TrialRecord]) -> dict[str, SeedStats]:
    """Run (or continue) the seed re-runs; trial id of each re-run configuration -> its seed statistics.
    A re-run that diverged or errored counts no value."""
    from search.records import UNFINISHED

    pairs = rerun_plan(records, plan.rerun_top, plan.rerun_seeds)
    if not pairs or any(r.status == UNFINISHED for r in records):  # the search itself must be finished first
        return {}
    configs = [cfg for _, cfg in pairs]
    stops = {config_key(cfg): record.epochs_run for record, cfg in pairs}
    runs = run_fixed(plan, RERUNS_DIR, configs, "re-runs", stop_epochs=stops)
    return seed_stats(pairs, runs)


def seed_stats(pairs: Sequence[tuple[TrialRecord, Mapping[str, Any]]], runs: Sequence[FixedRun]) -> dict[str, SeedStats]:
    """Per original trial: its own best val_acc and seed, then each usable re-run's."""
    out: dict[str, SeedStats] = {}
    for (record, cfg), run in zip(pairs, runs):
        stats = out.get(record.trial_id) or SeedStats(record.trial_id, (int(record.config["seed"]),),
                                                      (record.best_val_acc,))
        if not run.diverged and run.status != "ERROR" and not math.isnan(run.best_val_acc):
            stats = SeedStats(record.trial_id, (*stats.seeds, int(cfg["seed"])), (*stats.values, run.best_val_acc))
        out[record.trial_id] = stats
    return out
