"""Which failing trials are retried.

Ray retries every failed trial up to ``FailureConfig.max_failures`` times,
whatever the error, and has no per-error switch. That is right for a dead
node or a flaky disk, and wasted work for an error that comes from the
trial's own config or data: it fails the same way each time. So the trial
function is wrapped (:func:`no_retry_on_config_errors`): when it raises a
``ValueError`` (the type of ``fgmodels.config.ConfigError`` and of
``fgmodels.data.DatasetError``) or any error whose ``deterministic``
attribute is true, it reports one last record naming the error, then raises
it as before. A driver callback (:class:`ConfigErrorsEndTrials`) reads that
record and, when the error came before the attempt's first epoch (or is
marked deterministic), sets the trial's retry budget to zero, so Ray marks it
ERROR at once, with the traceback in its ``error.txt`` as usual. A
``ValueError`` after some epochs is retried like any other error.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from ray import tune

from search.objective import METRIC

ERROR_KEY = "config_or_data_error"  # the last record's message: "<ErrorType>: <message>"
MARKED_KEY = "error_marked_deterministic"


def is_config_or_data_error(err: BaseException) -> bool:
    return isinstance(err, ValueError) or bool(getattr(err, "deterministic", False))


def no_retry_on_config_errors(train: Callable[..., Any]) -> Callable[..., Any]:
    """``train`` (a Ray function trainable), reporting a config or data error before raising it."""
    @functools.wraps(train)
    def guarded(config: dict[str, Any], **kwargs: Any) -> Any:
        try:
            return train(config, **kwargs)
        except Exception as err:
            if is_config_or_data_error(err):
                # Ray's Optuna searcher reads METRIC from every record; the driver callback
                # removes it again before any logger or printer sees this record.
                tune.report({ERROR_KEY: f"{type(err).__name__}: {err}"[:1000],
                             MARKED_KEY: bool(getattr(err, "deterministic", False)), METRIC: 0.0})
            raise
    return guarded


class ConfigErrorsEndTrials(tune.Callback):
    """Driver side: a trial whose config or data failed before its first epoch
    gets no retries. Must come first in the callback list (it edits the record
    the later callbacks and Ray's loggers see)."""

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if ERROR_KEY not in result:
            return
        result.pop(METRIC, None)  # not a measurement
        first_record_of_attempt = result.get("iterations_since_restore") == 1
        if first_record_of_attempt or result.get(MARKED_KEY):
            trial.max_failures = 0
            print(f"[search] trial {trial.trial_id} failed before its first epoch, not retried: "
                  f"{result[ERROR_KEY]}", flush=True)
