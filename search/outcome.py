"""How a search run ended, in words and as the driver's exit status.

0: the search finished and found a configuration; 1: it ran, but no trial
completed an epoch or the best trial errored, so there is nothing to trust;
2: an option or an early check failed and nothing started; 130: Ctrl-C
stopped it (the state is saved and ``--resume`` continues it).
"""
from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Any

from search.objective import METRIC

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def program() -> str:
    """How the user started the driver, for commands to copy."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return f"python {shlex.quote(argv0)}" if Path(argv0).name == "run_search.py" else "fgvc-search"


def resume_command(plan: Any) -> str:
    return f"{program()} --resume --name {shlex.quote(plan.name)} --storage {shlex.quote(plan.storage)}"


def _acc(record: Any) -> float:
    return -1.0 if math.isnan(record.best_val_acc) else record.best_val_acc


def failure_reason(records: list[Any]) -> str | None:
    """Why a finished search gave nothing to trust (one paragraph), or None."""
    measured = [r for r in records if r.epochs_run > 0]
    if not measured:
        counts: dict[str, int] = {}
        for r in records:
            counts[r.status] = counts.get(r.status, 0) + 1
        first = next((r for r in records if r.status == "errored"), None) or (records[0] if records else None)
        where = f"{first.path}/error.txt" if first is not None and first.status == "errored" else "each trial's log"
        return (f"no trial completed an epoch ({', '.join(f'{n} {s}' for s, n in counts.items()) or 'no trial ran'}), "
                f"so the search has no result."
                + (f" Trial {first.trial_id}: {first.message}." if first is not None and first.message else "")
                + f" Fix: read {where}, correct the config, data or space it names, and start a new search "
                  f"(or continue this one with --resume: errored trials start again)")
    best = max(measured, key=lambda r: (_acc(r), -r.epochs_run))
    if best.status == "errored":
        return (f"the best trial by {METRIC}, {best.trial_id} ({best.best_val_acc:.4f} at epoch {best.best_epoch}), "
                f"errored after {best.epochs_run} epoch(s): {best.message}. A trial that crashed is no finished "
                f"configuration, so nothing was evaluated on the test split. Fix: read {best.path}/error.txt, remove "
                f"the cause, and continue with --resume (an errored trial continues from its last checkpoint)")
    return None


def interrupted_summary(records: list[Any], plan: Any) -> str:
    """What an interrupted search did so far and the exact command that continues it."""
    epochs = sum(r.epochs_run for r in records)
    lines = [f"search interrupted (Ctrl-C): {len(records)} of {plan.num_samples} trial(s) started, "
             f"{epochs} epoch(s) done so far; Ray saved the state of every trial"]
    for r in sorted(records, key=lambda r: r.trial_id):
        acc = "" if math.isnan(r.best_val_acc) else f", best {METRIC} {r.best_val_acc:.4f}"
        state = "interrupted" if r.status == "unfinished" else r.status
        lines.append(f"  trial {r.trial_id} ({r.method}): {r.epochs_run} epoch(s){acc}, {state}")
    lines.append("nothing was evaluated on the test split; continue the search with:")
    lines.append(f"  {resume_command(plan)}")
    return "\n".join(lines)
