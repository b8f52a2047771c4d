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
