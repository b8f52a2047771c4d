"""Each trial's own output, kept in the search folder.

Ray writes a trial's stdout and stderr into the trial's working directory,
which lives in Ray's session folder in the temp directory (on a cluster, on
the worker): cleaned with it, and out of reach of the person reading the
results. The trial function is wrapped so that, when it ends for any reason
(finished, stopped, raised), the last part of both streams is copied to
``<search folder>/trial_<id>/stdout.txt`` and ``stderr.txt``, beside the
traceback Ray itself saves there as ``error.txt``.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

KEEP_BYTES = 200_000  # the tail of each stream: tracebacks and the last epochs
STREAMS = ("stdout", "stderr")  # the names Ray's log_to_file gives them in the working directory


def log_path(experiment_path: str, trial_id: str, stream: str) -> Path:
    return Path(experiment_path) / f"trial_{trial_id}" / f"{stream}.txt"


def copy_tails(source_dir: Path, experiment_path: str, trial_id: str) -> list[Path]:
    """Copy the tail of each stream file found in ``source_dir``; returns the files written."""
    written = []
    for stream in STREAMS:
        src = source_dir / stream
        if not src.is_file():
            continue
        with src.open("rb") as fh:
            fh.seek(max(0, src.stat().st_size - KEEP_BYTES))
            tail = fh.read()
        dest = log_path(experiment_path, trial_id, stream)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(tail)
        tmp.replace(dest)
        written.append(dest)
    return written


def keep_trial_logs(train: Callable[..., Any], experiment_path: str | None) -> Callable[..., Any]:
    """``train`` (a Ray function trainable) whose output tails land in the search folder
    (local or shared storage; with a bucket they stay in Ray's folders)."""
    if experiment_path is None:
        return train

    @functools.wraps(train)
    def logged(config: dict[str, Any], **kwargs: Any) -> Any:
        from ray import tune

        try:
            return train(config, **kwargs)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            trial_id = tune.get_context().get_trial_id()
            if trial_id:
                try:
                    copy_tails(Path.cwd(), experiment_path, trial_id)
                except OSError as err:  # never hide the trial's own error behind a logging one
                    print(f"[search] could not keep the output of trial {trial_id}: {err}", file=sys.stderr)
    return logged
