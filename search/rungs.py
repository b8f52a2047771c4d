"""Where the pruning signal is: how well a trial's val_acc at each epoch (each
possible rung of the scheduler) predicts how it ends.

For every epoch e, the Spearman rank correlation between val_acc at e and

* ``final``: val_acc at the last epoch, over the trials that ran every epoch;
* ``best``: the trial's best val_acc, over the rankable trials that reached e
  (pruned ones included, so early rungs are not judged on survivors only).
  It flatters early epochs: a trial stopped at epoch e often has its best
  at e, so it agrees with itself there. ``final`` is the clean measure; it
  needs at least 3 trials that ran every epoch.

A rung whose correlation is near 1 ranks trials as their end does: stopping
there loses little. Written to ``rung_correlation.json`` and drawn in
``rung_correlation.png``.
:mod:`search.grace` turns these rows into ``--grace-period auto``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.records import COMPLETED, TrialRecord

RUNG_JSON, RUNG_PNG = "rung_correlation.json", "rung_correlation.png"
MIN_TRIALS = 3  # two points always correlate perfectly: nothing to learn from them


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant."""
    rx, ry = average_ranks(xs), average_ranks(ys)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else float("nan")


def rung_correlations(records: list[TrialRecord], max_epochs: int) -> list[dict[str, Any]]:
    """One entry per epoch: trials counted and the two correlations (None when
    fewer than :data:`MIN_TRIALS` trials or no spread)."""
    finished = [dict(r.curve) for r in records if r.status == COMPLETED and r.curve]
    rows = []
    for epoch in range(1, max_epochs + 1):
        final = [(c[epoch], c[max(c)]) for c in finished if epoch in c]
        best = [(dict(r.curve)[epoch], r.best_val_acc) for r in records if r.ranked and epoch in dict(r.curve)]
        rows.append({"epoch": epoch, "final_trials": len(final), "final": _corr(final),
                     "best_trials": len(best), "best": _corr(best)})
    return rows


def _corr(pairs: list[tuple[float, float]]) -> float | None:
    if len(pairs) < MIN_TRIALS:
        return None
    value = spearman([a for a, _ in pairs], [b for _, b in pairs])
    return None if math.isnan(value) else value


def write_rung_correlation(records: list[TrialRecord], max_epochs: int, folder: Path) -> tuple[list[dict], str]:
    """Write the JSON and the PNG; return the rows and a printable summary."""
    from search.plots import rung_correlation_plot

    rows = rung_correlations(records, max_epochs)
    (folder / RUNG_JSON).write_text(json.dumps(rows, indent=2) + "\n")
    rung_correlation_plot(rows, folder / RUNG_PNG)
    show = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
    text = "rank correlation of val_acc at each epoch with the end (Spearman; final | best): " + ", ".join(
        f"e{r['epoch']} {show(r['final'])} | {show(r['best'])}" for r in rows)
    return rows, text

