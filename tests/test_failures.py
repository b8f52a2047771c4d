"""Which failed trials Ray retries, in a real (tiny) Ray Tune run: a config or
data error before the first epoch ends the trial at once; a crash, or a
ValueError after some epochs, is retried --max-failures times as before."""
from __future__ import annotations

import json
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_FAILURES = 2


def test_config_errors_end_a_trial_at_once_other_failures_are_retried(tmp_path: Path) -> None:
    import ray
    from ray import tune

    from search.failures import ERROR_KEY, ConfigErrorsEndTrials, no_retry_on_config_errors

    # defined here, not at module level: Ray's workers get it by value (they cannot import this test file)
    def _trial(config: dict, log_dir: str) -> None:
        """Notes each start, then fails as ``config["fail"]`` says."""
        from ray import tune

        from fgmodels.config import ConfigError

        kind = config["fail"]
        with open(Path(log_dir) / f"{kind}.starts", "a") as fh:
            fh.write("start\n")
        if kind == "config_error":
            raise ConfigError("unknown config key 'lrr' for method 'gholm'")
        if kind == "crash":
            raise RuntimeError("the worker lost its GPU")
        tune.report({"epoch": 1, "val_acc": 0.5})
        if kind == "value_error_later":
            raise ValueError("a numerical problem in epoch 2")
        err = RuntimeError("marked as always failing the same way")
        err.deterministic = True  # type: ignore[attr-defined]
        raise err

    kinds = ["config_error", "crash", "value_error_later", "marked_later"]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        trainable = tune.with_parameters(no_retry_on_config_errors(_trial), log_dir=str(tmp_path))
        tuner = tune.Tuner(trainable, param_space={"fail": tune.grid_search(kinds)},
                           run_config=tune.RunConfig(name="retries", storage_path=str(tmp_path / "results"),
                                                     failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                                                     callbacks=[ConfigErrorsEndTrials()], verbose=0))
        grid = tuner.fit()
    finally:
        ray.shutdown()
    starts = {k: len((tmp_path / f"{k}.starts").read_text().splitlines()) for k in kinds}
    assert starts == {"config_error": 1, "crash": 1 + MAX_FAILURES, "value_error_later": 1 + MAX_FAILURES,
                      "marked_later": 1}
    by_kind = {r.config["fail"]: r for r in grid}
    assert all(r.error is not None for r in by_kind.values())  # each ends ERROR, with its error kept
    assert "unknown config key 'lrr'" in str(by_kind["config_error"].error)
    rows = [json.loads(line) for line in (Path(by_kind["config_error"].path) / "result.json").read_text().splitlines()]
    assert [r[ERROR_KEY] for r in rows] == ["ConfigError: unknown config key 'lrr' for method 'gholm'"]
    assert "val_acc" not in rows[0]  # the searcher's placeholder never reaches the logs
