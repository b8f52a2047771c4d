"""Consistency checks run on every loaded dataset before any training starts.

A mislabelled or half-copied dataset otherwise shows up hours later as a crash
in a data-loader worker or, worse, as a silently lower accuracy.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from fgmodels.data.types import DatasetError, RawSplits


def preview(items: Iterable[object], limit: int = 10) -> str:
    """``a, b, c ... (+N more)``: error messages stay readable for big lists."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... (+{len(items) - limit} more)" if len(items) > limit else "")


def check_splits(raw: RawSplits, source: str) -> RawSplits:
    """Raise :class:`DatasetError` if ``raw`` cannot be trained on; return it unchanged.

    ``source`` names the dataset and the annotation files in the messages.
    Image files are not opened here: :func:`fgmodels.data.check_dataset` checks
    them all at once (missing ones included), so one report names every bad file.
    """
    k = raw.num_classes
    if k < 2:
        raise DatasetError(f"{source}: found {k} classes; a classifier needs at least 2")
    if not raw.train:
        raise DatasetError(f"{source}: the training split is empty")
    if not raw.test:
        raise DatasetError(f"{source}: the test split is empty")
    everything = [("train", s) for s in raw.train] + [("test", s) for s in raw.test]

    bad = [f"{s.path} (label {s.label + 1} 1-based)" for _, s in everything if not 0 <= s.label < k]
    if bad:
        raise DatasetError(
            f"{source}: {len(bad)} images have labels outside 1..{k} (the number of classes): "
            f"{preview(bad)}. Fix the label file or the class list."
        )

    for what, key in (("image path", lambda s: s.path), ("image id", lambda s: s.image_id)):
        counts = Counter(key(s) for _, s in everything if key(s) is not None)
        dups = [v for v, n in counts.items() if n > 1]
        if dups:
            raise DatasetError(
                f"{source}: {len(dups)} duplicated {what}s (an image listed twice, or in both "
                f"train and test): {preview(dups)}. Each image must be listed exactly once."
            )

    have = Counter(s.label for s in raw.train)
    empty = [f"{raw.class_names[c]!r} (label {c + 1})" for c in range(k) if have[c] == 0]
    if empty:
        raise DatasetError(
            f"{source}: {len(empty)} classes have no training images: {preview(empty)}. "
            "Add images for them or remove them from the class list."
        )
    return raw
