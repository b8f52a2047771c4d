"""Stratified train/validation split: hyperparameters are chosen on val, never on test."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from fgmodels.data.types import Sample


def stratified_split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Move ``round(n_c * val_fraction)`` images of every class ``c`` to validation.

    Each class keeps at least one training image. The result depends only on the
    set of samples and the seed, not on their order; both lists keep input order.
    ``val_fraction`` 0 keeps every image for training (a final fit, no validation).
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    if float(val_fraction) == 0.0:
        return list(samples), []
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.label].append(i)
    rng = np.random.default_rng(seed)
    val_idx: set[int] = set()
    for label in sorted(by_class):
        idx = sorted(by_class[label], key=lambda i: (samples[i].path, samples[i].image_id or ""))
        n_val = min(len(idx) - 1, int(round(len(idx) * float(val_fraction))))
        perm = rng.permutation(len(idx))
        val_idx.update(idx[j] for j in perm[:n_val])
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
