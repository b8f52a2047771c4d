"""The standard FGVC pipeline: resize the shorter side, crop, flip, jitter, normalise."""
from __future__ import annotations

from typing import Callable

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

REAL_DATASETS = ("cub", "aircraft", "cars", "dogs", "imagefolder")
DEFAULT_SIZES = {**{name: (448, 510) for name in REAL_DATASETS}, "synthetic": (64, 72)}


def default_sizes(data: str) -> tuple[int, int]:
    """``(img_size, resize_size)``: 448/510 as in most FGVC papers; 64/72 for the 80 px synthetic set."""
    try:
        return DEFAULT_SIZES[data]
    except KeyError:
        raise ValueError(f"unknown dataset {data!r}; choose one of {sorted(DEFAULT_SIZES)}") from None


def build_transforms(img_size: int, resize_size: int, train: bool, color_jitter: float = 0.4) -> Callable:
    """PIL RGB image -> normalised float tensor (3, img_size, img_size)."""
    if img_size <= 0 or resize_size < img_size:
        raise ValueError(f"need 0 < img_size <= resize_size, got img_size={img_size}, resize_size={resize_size}")
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    steps: list[Callable] = [T.Resize(resize_size)]
    if train:
        steps += [T.RandomCrop(img_size), T.RandomHorizontalFlip()]
        if color_jitter > 0:
            steps.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    else:
        steps.append(T.CenterCrop(img_size))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def box_after_eval_transform(
    box: tuple[float, float, float, float], orig_wh: tuple[int, int], img_size: int, resize_size: int
) -> tuple[float, float, float, float]:
    """Where an ``x, y, w, h`` box lands after the eval transform, clipped to the crop.

    Mirrors torchvision: the shorter side becomes ``resize_size``, the longer one
    ``int(resize_size * long / short)``; the crop offset is ``round((side - img_size) / 2)``.
    """
    w0, h0 = orig_wh
    if w0 <= h0:
        new_w, new_h = resize_size, int(resize_size * h0 / w0)
    else:
        new_w, new_h = int(resize_size * w0 / h0), resize_size
    sx, sy = new_w / w0, new_h / h0
    left, top = int(round((new_w - img_size) / 2.0)), int(round((new_h - img_size) / 2.0))
    x, y, w, h = box
    x0 = min(max(x * sx - left, 0.0), float(img_size))
    y0 = min(max(y * sy - top, 0.0), float(img_size))
    x1 = min(max((x + w) * sx - left, 0.0), float(img_size))
    y1 = min(max((y + h) * sy - top, 0.0), float(img_size))
    return (x0, y0, x1 - x0, y1 - y0)
