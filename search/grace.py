"""``--grace-period auto``: ASHA's first rung where the ranking becomes reliable.

The rule (:func:`first_reliable_epoch`): the first epoch from which on the
``final`` rank correlation of :mod:`search.rungs` (Spearman of each epoch's
val_acc with the final val_acc, over trials run to full length) stays at or
above :data:`RELIABLE`. It was measured once on the search benchmark's pool of
configurations trained to full length and is kept here as a fraction of the
trials' length (:data:`AUTO_GRACE_FRACTION`), so it scales with
``--max-epochs``; ``benchmarks/bench_search.py --replay`` measures it again.
"""
from __future__ import annotations

from typing import Any

AUTO = "auto"
RELIABLE = 0.7  # Spearman with the final val_acc from which a rung's ranking is trusted
# first_reliable_epoch / max_epochs on the benchmark pool (benchmarks/results_search/grace_rule.md)
AUTO_GRACE_FRACTION = 0.3


def first_reliable_epoch(rows: list[dict[str, Any]], threshold: float = RELIABLE) -> int | None:
    """The first epoch from which on every ``final`` correlation is >= ``threshold``
    (a single lucky early epoch does not count); None when even the last is not."""
    first = None
    for row in rows:
        value = row["final"]
        if value is not None and value >= threshold:
            first = row["epoch"] if first is None else first
        else:
            first = None
    return first


def auto_grace(max_epochs: int, fraction: float = AUTO_GRACE_FRACTION) -> int:
    """``--grace-period auto``: ``fraction`` of the trials' length, rounded, in [1, max_epochs]."""
    return min(max_epochs, max(1, int(fraction * max_epochs + 0.5)))


def describe_auto_grace(max_epochs: int) -> str:
    """Why ``auto`` resolved to its grace (for the plan printout)."""
    return (f"--grace-period auto = {auto_grace(max_epochs)}: {AUTO_GRACE_FRACTION:g} x --max-epochs {max_epochs}, "
            f"rounded half up (on the benchmark pool the rank correlation of val_acc with the final val_acc stays >= "
            f"{RELIABLE:g} from that fraction of the epochs on)")
