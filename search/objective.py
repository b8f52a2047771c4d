"""What every search optimises, written once: the searcher, the scheduler, the
checkpoint keeper, the records and the progress lines all read these names.

The trainable reports ``val_acc`` (accuracy on the validation split, never the
test split) once per epoch, and ``epoch`` (1-based) is the unit of time in
which schedulers count a trial's budget.
"""
from __future__ import annotations

METRIC = "val_acc"
MODE = "max"
TIME_ATTR = "epoch"


def rank_key(best_val_acc: float, epochs_run: int, trial_id: str) -> tuple[float, int, str]:
    """How finished trials are ordered, best first, wherever they are ranked (the
    leaderboard, the checkpoint keeper): higher best val_acc, then fewer epochs
    (the same accuracy for less compute), then the trial id so ties are stable."""
    return (-best_val_acc, epochs_run, trial_id)
