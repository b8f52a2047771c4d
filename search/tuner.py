"""Build, run and restore the Ray Tune search of a :class:`SearchPlan`.

The searcher and the scheduler come from their registries
(:mod:`search.searchers`, :mod:`search.schedulers`) by the names the plan
records; every trial is :func:`search.trainable.train_trial`, wrapped so that
a config or data error is not retried (:mod:`search.failures`). Nothing here
knows a model.
"""
from __future__ import annotations

import functools

import os
import signal
import sys
from pathlib import Path
from typing import Any

from fgmodels.hooks import HOOKS_ENV
from fgmodels.registry import PLUGINS_ENV
from search.objective import METRIC, MODE
from search.plan import SearchPlan
from search.schedulers import SCHEDULERS, build_scheduler
from search.searchers import build_searcher, searcher_param_space
from search.spaces import SearchSpace

REPO_ROOT = Path(__file__).resolve().parent.parent
START_LOG_DIR = "trial_starts"
KEEP_CHECKPOINTS = 1  # Ray keeps the best by val_acc plus always the latest (for resume)
# Read by the trial processes (the test hooks and the user's method plugins): a
# cluster's workers do not inherit the driver's environment, so Ray ships these.
WORKER_ENV = ("PYTHONPATH", PLUGINS_ENV, HOOKS_ENV)


def init_ray(plan: SearchPlan) -> None:
    """Start a private local Ray (dashboard off unless --dashboard) or join ``--address``."""
    import ray

    if ray.is_initialized():  # the driver joined the cluster early to check its storage
        return
    # Trial workers import fgmodels/search from this checkout.
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Snapshots after every checkpoint are what makes --resume exact; on a busy
    # machine Ray would warn about each one and about slow result processing.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": "WARNING"}
    if plan.address:
        env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
        ray.init(address=plan.address, runtime_env={"env_vars": env}, **common)
    else:
        # "local": never attach silently to someone else's `ray start` cluster.
        # The dashboard exposes the cluster: off by default, localhost when asked,
        # another interface only when named explicitly (--dashboard HOST).
        ray.init(address="local", include_dashboard=plan.dashboard_host is not None,
                 dashboard_host=plan.dashboard_host or "127.0.0.1", **common)


def trainable_for(plan: SearchPlan, experiment_path: str | None = None) -> Any:
    """The search's trainable; ``experiment_path``: the Ray experiment its trials
    belong to (default the search's own; re-runs and final fits have theirs)."""
    from ray import tune

    from search.failures import no_retry_on_config_errors
    from search.trainable import train_trial
    from search.trial_logs import keep_trial_logs

    start_log = None if plan.is_remote else str(Path(plan.experiment_path) / START_LOG_DIR)
    experiment_path = experiment_path or plan.experiment_path
    logged = keep_trial_logs(no_retry_on_config_errors(train_trial), None if plan.is_remote else experiment_path)
    fn = tune.with_parameters(logged, start_log_dir=start_log)
    return tune.with_resources(fn, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial})


def callbacks_for(plan: SearchPlan) -> list[Any]:
    from search.callbacks import ProgressPrinter, WandbTrialCallback
    from search.disk import CheckpointPruner
    from search.failures import ConfigErrorsEndTrials
    from search.stops import load_stop_decisions

    stops = functools.partial(load_stop_decisions, plan.experiment_path)
    # ConfigErrorsEndTrials first: it cleans the record the others see.
    callbacks: list[Any] = [ConfigErrorsEndTrials(),
                            ProgressPrinter(plan.max_epochs, plan.num_samples, METRIC, stop_decisions=stops),
                            CheckpointPruner(plan.keep_checkpoints)]
    if plan.wandb != "off":
        callbacks.append(WandbTrialCallback(plan.wandb, plan.name, str(plan.local_dir)))
    return callbacks


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Ray's default repeats the whole config in the name)."""
    return f"trial_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return str(trial.trial_id)


def tune_config_for(plan: SearchPlan, space: SearchSpace) -> Any:
    from ray import tune

    return tune.TuneConfig(search_alg=build_searcher(plan, space), scheduler=build_scheduler(plan, space),
                           num_samples=plan.num_samples, max_concurrent_trials=plan.max_concurrent,
                           trial_dirname_creator=trial_dirname, trial_name_creator=trial_name)


def build_tuner(plan: SearchPlan, space: SearchSpace) -> Any:
    from ray import tune

    run_config = tune.RunConfig(
        name=plan.name,
        storage_path=plan.storage,
        callbacks=callbacks_for(plan),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=SCHEDULERS[plan.scheduler].checkpoints_per_trial or KEEP_CHECKPOINTS,
            checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE),
        # A trial whose worker process or node dies (or that raises) restarts from its
        # latest checkpoint up to max_failures times, then is ERROR; the search goes on.
        failure_config=tune.FailureConfig(max_failures=plan.max_failures, fail_fast=False),
        verbose=0,  # ProgressPrinter prints one readable line per epoch instead
        log_to_file=True,  # each trial's stdout/stderr in its folder
    )
    return tune.Tuner(trainable_for(plan), tune_config=tune_config_for(plan, space), run_config=run_config,
                      param_space=searcher_param_space(plan, space))


def restore_tuner(plan: SearchPlan) -> Any:
    """Continue an interrupted search: finished trials stay finished, running
    ones continue from their latest checkpoint, errored ones too."""
    from ray import tune

    return tune.Tuner.restore(plan.experiment_path, trainable_for(plan), resume_unfinished=True,
                              resume_errored=True, restart_errored=False)


def can_restore(plan: SearchPlan) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(plan.experiment_path)


def _second_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(plan: SearchPlan, space: SearchSpace, resume: bool = False) -> bool:
    """Run (or resume) the search; True when Ctrl-C (SIGINT) ended it early.

    Ray catches the first SIGINT itself: it stops the trials, saves the
    experiment state (what --resume continues from) and returns normally,
    putting back the handler it found. That handler is ours, so finding it in
    place afterwards tells that the search was interrupted; a second SIGINT
    while Ray saves reaches it and raises KeyboardInterrupt."""
    tuner = restore_tuner(plan) if resume else build_tuner(plan, space)
    print(f"[search] {'resuming' if resume else 'starting'} {plan.experiment_path}", flush=True)
    return fit_until_interrupted(tuner)


def fit_until_interrupted(tuner: Any) -> bool:
    """``tuner.fit()``; True when Ctrl-C ended it early (see :func:`run`)."""
    sys.stdout.flush()
    ray_catches_sigint = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    previous = signal.signal(signal.SIGINT, _second_interrupt)
    try:
        tuner.fit()
        return ray_catches_sigint and signal.getsignal(signal.SIGINT) is _second_interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
