"""From a trial config to train/val/test torch datasets, with every check done first."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from fgmodels.data.imageio import load_sample
from fgmodels.data.preflight import BAD_IMAGE_POLICIES, DataReport, check_dataset
from fgmodels.data.source import SYNTHETIC_BASE_SIZE
from fgmodels.data.split import stratified_split
from fgmodels.data.transforms import Geometry, build_transforms, dataset_default
from fgmodels.data.types import DatasetError, Sample
from fgmodels.data.verify import BadFile


class ImageListDataset(Dataset):
    """``(image_tensor, label)`` for a list of :class:`Sample`; images are always RGB.

    With ``bad_image_policy="skip"`` an image that fails to decode at run time
    (it passed :func:`~fgmodels.data.check_dataset`, then changed on disk) is replaced by the
    next readable one instead of killing a long run; ``"fail"`` raises with its path.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable | None, bad_image_policy: str = "fail") -> None:
        if bad_image_policy not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_image_policy must be one of {BAD_IMAGE_POLICIES}, got {bad_image_policy!r}")
        self.samples = list(samples)
        self.transform = transform
        self.bad_image_policy = bad_image_policy

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = load_sample(sample)
            except (OSError, SyntaxError, ValueError) as err:
                if self.bad_image_policy == "fail":
                    raise DatasetError(
                        f"cannot read image {sample.path}: {err}. "
                        "Fix: replace or delete it, or set bad_image_policy=skip"
                    ) from err
                warnings.warn(f"skipping unreadable image {sample.path}: {err}", stacklevel=2)
                continue
            return (self.transform(image) if self.transform else image), sample.label
        raise DatasetError(f"none of the {len(self.samples)} images in this dataset can be read")


@dataclass
class DataBundle:
    train: ImageListDataset
    val: ImageListDataset
    test: ImageListDataset
    num_classes: int
    class_names: list[str]
    report: DataReport | None = None  # what check_dataset found, skipped files included
    root: Path | None = None

    @property
    def skipped(self) -> list[BadFile]:
        """Files left out under bad_image_policy "skip" (path, reason, detail)."""
        return list(self.report.skipped) if self.report else []


def resolve_geometry(cfg: Mapping[str, Any]) -> Geometry:
    """The trial's resize mode and sizes: keys left as None (or ``resize: auto``) take the
    dataset's defaults; a size given alone keeps the default ratio of the two."""
    data = cfg.get("data", "synthetic")
    default = dataset_default(data)
    resize = cfg.get("resize") or "auto"
    resize = default.resize if resize == "auto" else resize
    img, size = default.img_size, default.resize_size
    if data == "synthetic":
        factor = int(cfg.get("synthetic_image_size", SYNTHETIC_BASE_SIZE)) / SYNTHETIC_BASE_SIZE
        img, size = int(round(img * factor)), int(round(size * factor))
    want_img, want_resize = cfg.get("img_size"), cfg.get("resize_size")
    if want_img is not None and want_resize is not None:
        img, size = int(want_img), int(want_resize)
    elif want_img is not None:
        img, size = int(want_img), int(round(int(want_img) * size / img))
    elif want_resize is not None:
        img, size = min(int(want_resize), int(round(int(want_resize) * img / size))), int(want_resize)
    return Geometry(resize, img, img if resize == "direct" else size)


def resolve_sizes(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(img_size, resize_size)`` of :func:`resolve_geometry` (``direct``: both are the input size)."""
    geometry = resolve_geometry(cfg)
    return geometry.img_size, geometry.resize_size


def build_datasets(cfg: Mapping[str, Any]) -> DataBundle:
    """Datasets for one trial: stratified val split of the train pool, eval transform on val/test.

    The files come from :func:`check_dataset`, so a trial trains on exactly the
    files the pre-search check accepted (its verdicts are cached: no second decode).
    """
    report = check_dataset(cfg)
    raw, policy = report.raw, cfg.get("bad_image_policy", "fail")
    # split_seed, not the training seed: trials that differ in seed must still be
    # compared on the same validation images
    train, val = stratified_split(raw.train, float(cfg.get("val_fraction", 0.2)), int(cfg.get("split_seed", 0)))
    geometry = resolve_geometry(cfg)
    train_tf = build_transforms(geometry, train=True, color_jitter=float(cfg.get("color_jitter", 0.4)))
    eval_tf = build_transforms(geometry, train=False)
    return DataBundle(
        train=ImageListDataset(train, train_tf, policy),
        val=ImageListDataset(val, eval_tf, policy),
        test=ImageListDataset(raw.test, eval_tf, policy),
        num_classes=raw.num_classes,
        class_names=list(raw.class_names),
        report=report,
        root=report.root,
    )
