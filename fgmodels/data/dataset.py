"""From a trial config to train/val/test torch datasets, with every check done first."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from fgmodels.data.checks import check_splits
from fgmodels.data.cub import CUB_LAYOUT, load_cub
from fgmodels.data.imageio import load_sample, verify_images
from fgmodels.data.loaders import (
    AIRCRAFT_LAYOUT, CARS_LAYOUT, DOGS_LAYOUT, IMAGEFOLDER_LAYOUT,
    load_aircraft, load_cars, load_dogs, load_imagefolder,
)
from fgmodels.data.split import stratified_split
from fgmodels.data.synthetic import ensure_synthetic
from fgmodels.data.transforms import build_transforms, default_sizes
from fgmodels.data.types import DatasetError, RawSplits, Sample

log = logging.getLogger(__name__)

LOADERS: dict[str, tuple[Callable[[Any], RawSplits], str]] = {
    "cub": (load_cub, CUB_LAYOUT),
    "aircraft": (load_aircraft, AIRCRAFT_LAYOUT),
    "cars": (load_cars, CARS_LAYOUT),
    "dogs": (load_dogs, DOGS_LAYOUT),
    "imagefolder": (load_imagefolder, IMAGEFOLDER_LAYOUT),
}
SYNTHETIC_BASE_SIZE = 80  # default_sizes("synthetic") is meant for 80 px images


class ImageListDataset(Dataset):
    """``(image_tensor, label)`` for a list of :class:`Sample`; images are always RGB.

    With ``bad_image_policy="skip"`` an image that fails to decode at run time
    (it passed :func:`verify_images`, then changed on disk) is replaced by the
    next readable one instead of killing a long run; ``"fail"`` raises with its path.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable | None, bad_image_policy: str = "fail") -> None:
        if bad_image_policy not in ("fail", "skip"):
            raise ValueError(f"bad_image_policy must be 'fail' or 'skip', got {bad_image_policy!r}")
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
                        f"cannot read image {sample.path}: {err}; fix or delete it, or set bad_image_policy: skip"
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
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) dropped by policy "skip"
    root: Path | None = None


def load_raw(cfg: dict[str, Any]) -> tuple[RawSplits, Path]:
    """The dataset named by ``cfg["data"]``; the synthetic one is generated on demand."""
    data, root = cfg.get("data", "synthetic"), cfg.get("data_root")
    if data == "synthetic":
        path = ensure_synthetic(
            cache_dir=root,
            num_classes=int(cfg.get("synthetic_classes", 10)),
            per_class=int(cfg.get("synthetic_per_class", 60)),
            image_size=int(cfg.get("synthetic_image_size", SYNTHETIC_BASE_SIZE)),
            seed=int(cfg.get("synthetic_seed", 0)),
        )
        return load_cub(path), path
    if data not in LOADERS:
        raise DatasetError(f"unknown dataset {data!r}; choose one of {['synthetic', *LOADERS]}")
    loader, layout = LOADERS[data]
    if not root:
        raise DatasetError(f"data={data!r} needs data_root: a folder laid out as\n{layout}")
    return loader(root), Path(root)


def resolve_sizes(cfg: dict[str, Any]) -> tuple[int, int]:
    """Fill ``img_size``/``resize_size`` left as None from the dataset's defaults (same ratio)."""
    data = cfg.get("data", "synthetic")
    img, resize = default_sizes(data)
    if data == "synthetic":
        factor = int(cfg.get("synthetic_image_size", SYNTHETIC_BASE_SIZE)) / SYNTHETIC_BASE_SIZE
        img, resize = int(round(img * factor)), int(round(resize * factor))
    want_img, want_resize = cfg.get("img_size"), cfg.get("resize_size")
    if want_img is None and want_resize is None:
        return img, resize
    if want_resize is None:
        return int(want_img), int(round(int(want_img) * resize / img))
    if want_img is None:
        return min(int(want_resize), int(round(int(want_resize) * img / resize))), int(want_resize)
    return int(want_img), int(want_resize)


def drop_bad_images(raw: RawSplits, policy: str, source: str) -> tuple[RawSplits, list[tuple[str, str]]]:
    """Decode every image once; ``fail`` raises listing all bad files, ``skip`` drops them."""
    bad = verify_images(raw.train + raw.test)
    if not bad:
        return raw, []
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
    if policy == "fail":
        raise DatasetError(
            f"{source}: {len(bad)} images cannot be read (bad_image_policy='fail'):\n{listing}\n"
            "Fix or delete them, or set bad_image_policy: skip to train without them."
        )
    log.warning("%s: skipping %d unreadable images:\n%s", source, len(bad), listing)
    drop = {p for p, _ in bad}
    kept = RawSplits([s for s in raw.train if s.path not in drop], [s for s in raw.test if s.path not in drop],
                     raw.class_names)
    return check_splits(kept, f"{source} after skipping unreadable images", check_files=False), bad


def build_datasets(cfg: dict[str, Any]) -> DataBundle:
    """Datasets for one trial: stratified val split of the train pool, eval transform on val/test."""
    policy = cfg.get("bad_image_policy", "fail")
    if policy not in ("fail", "skip"):
        raise DatasetError(f"bad_image_policy must be 'fail' or 'skip', got {policy!r}")
    raw, root = load_raw(cfg)
    raw, skipped = drop_bad_images(raw, policy, f"{cfg.get('data', 'synthetic')} at {root}")
    # split_seed, not the training seed: trials that differ in seed must still be
    # compared on the same validation images
    train, val = stratified_split(raw.train, float(cfg.get("val_fraction", 0.2)), int(cfg.get("split_seed", 0)))
    img_size, resize_size = resolve_sizes(cfg)
    jitter = float(cfg.get("color_jitter", 0.4))
    train_tf = build_transforms(img_size, resize_size, train=True, color_jitter=jitter)
    eval_tf = build_transforms(img_size, resize_size, train=False)
    return DataBundle(
        train=ImageListDataset(train, train_tf, policy),
        val=ImageListDataset(val, eval_tf, policy),
        test=ImageListDataset(raw.test, eval_tf, policy),
        num_classes=raw.num_classes,
        class_names=list(raw.class_names),
        skipped=skipped,
        root=root,
    )
