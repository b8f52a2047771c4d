"""One check of a dataset before any trial: layout, annotations and every image file.

The driver calls :func:`check_dataset` before it starts Ray, and every trial
calls it again through :func:`~fgmodels.data.build_datasets`; the second time
costs no decoding (the verdicts are cached per node, see
:mod:`fgmodels.data.verify`). Every bad file of every kind (missing, empty,
truncated, not an image, ...) is named in ONE report, so a broken folder is
fixed in one pass rather than one error at a time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from fgmodels.data.checks import check_splits, preview
from fgmodels.data.source import load_raw
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits
from fgmodels.data.verify import MISSING, BadFile, verify_samples

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("fail", "skip")  # stop before training, or train without the bad files
SKIP_FIX = "--set bad_image_policy=skip"


@dataclass(frozen=True)
class DataReport:
    """What :func:`check_dataset` found; ``raw`` holds only the files to train on."""

    source: str  # "<data> at <root>", for messages
    root: Path
    raw: RawSplits
    checked: int  # image files verified (a file listed twice counts once)
    decoded: int  # of which decoded by this call; the others had a cached verdict
    skipped: tuple[BadFile, ...] = ()  # left out under bad_image_policy "skip"

    def name(self, path: str) -> str:
        """``path`` relative to the dataset root when inside it: short, still unambiguous."""
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return path

    def summary(self) -> str:
        """One line for the end-of-search summary."""
        if not self.skipped:
            return f"{self.source}: all {self.checked} image files are readable"
        listed = preview(f"{self.name(b.path)} ({b.reason})" for b in self.skipped)
        return f"skipped {len(self.skipped)} files: {listed}"


def bad_files_error(source: str, bad: list[BadFile], total: int) -> DatasetError:
    """The error naming every bad file; a :class:`DatasetNotFoundError` when some are missing."""
    listing = "\n".join(f"  {b}" for b in bad)
    kind = DatasetNotFoundError if any(b.reason == MISSING for b in bad) else DatasetError
    return kind(
        f"{source}: {len(bad)} of {total} image files cannot be used (bad_image_policy='fail'):\n{listing}\n"
        f"Fix: restore or replace these files (or remove them from the annotations), or rerun with "
        f"{SKIP_FIX} to train without them."
    )


def check_dataset(cfg: Mapping[str, Any], workers: int | None = None) -> DataReport:
    """Load the layout, verify every image of every split once, apply ``bad_image_policy``.

    ``fail`` raises with the full list of bad files; ``skip`` returns a report
    whose ``raw`` leaves them out (missing files included) and whose
    ``skipped`` names them. ``workers`` threads decode (default: up to 8).
    """
    policy = cfg.get("bad_image_policy", "fail")
    if policy not in BAD_IMAGE_POLICIES:
        raise DatasetError(f"bad_image_policy must be one of {BAD_IMAGE_POLICIES}, got {policy!r}")
    raw, root = load_raw(cfg)
    source = f"{cfg.get('data', 'synthetic')} at {root}"
    samples = raw.train + raw.test
    bad, decoded = verify_samples(samples, root, workers)
    checked = len({s.path for s in samples})
    if bad and policy == "fail":
        raise bad_files_error(source, bad, checked)
    if bad:
        log.warning("%s: skipping %d bad image files (bad_image_policy='skip'):\n%s",
                    source, len(bad), "\n".join(f"  {b}" for b in bad))
        drop = {b.path for b in bad}
        raw = RawSplits([s for s in raw.train if s.path not in drop], [s for s in raw.test if s.path not in drop],
                        raw.class_names)
        raw = check_splits(raw, f"{source} after skipping {len(bad)} bad image files")
    return DataReport(source=source, root=root, raw=raw, checked=checked, decoded=decoded, skipped=tuple(bad))


__all__ = ["BAD_IMAGE_POLICIES", "DataReport", "bad_files_error", "check_dataset"]
