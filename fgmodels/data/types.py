"""Plain records shared by every loader, and the one error type the data layer raises."""
from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[float, float, float, float]  # x, y, w, h in original pixels


class DatasetError(ValueError):
    """A dataset that cannot be used as it is; the message names the file and the fix."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """An expected dataset file or folder is missing (catchable as FileNotFoundError too)."""


@dataclass
class Sample:
    """One image on disk with its 0-based label and optional annotations."""

    path: str
    label: int
    image_id: str | None = None
    bbox: Box | None = None  # object box
    part_box: Box | None = None  # discriminative part box (synthetic set)
    parts: tuple[tuple[int, float, float], ...] | None = None  # visible (part_id, x, y) keypoints (CUB)
    trim_bottom: int = 0  # rows to cut off the bottom after decoding (FGVC-Aircraft's copyright banner)
    # Turn the pixels upright as the EXIF orientation tag says (phone photos store
    # them sideways). Only for layouts without boxes: CUB/Cars/Aircraft/Dogs boxes
    # and keypoints are in stored-pixel coordinates, so those images stay as stored.
    exif_transpose: bool = False


@dataclass
class RawSplits:
    """What a loader returns: the official train pool, the test set and the class names."""

    train: list[Sample]
    test: list[Sample]
    class_names: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
