"""The FGVC image pipeline: resize (square, shorter side or straight), crop, flip, jitter, normalise.

Which resize a dataset gets is one table, :data:`DATASET_DEFAULTS`, taken from
the papers: GHOLM-Net (sec. 4.2) and most FGVC code resize CUB, Cars and
Aircraft to a 510 x 510 *square* (the aspect ratio is not kept, nothing is cut)
and crop 448 (random for training, centre for test); Stanford Dogs is resized
straight to 448 x 448 with no crop. ``shorter`` (shorter side to 510, keep the
aspect ratio, crop 448) is the torchvision-classification habit; it cuts about
a third of a 4:3 image's width, so it is available but nowhere the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESIZE_MODES = ("square", "shorter", "direct")


class DatasetDefault(NamedTuple):
    """A dataset's preprocessing when the config leaves ``resize``/``img_size``/``resize_size`` unset.

    ``resize_size`` is unused by ``direct``; it is the size a user who switches
    such a dataset to ``square`` or ``shorter`` gets.
    """

    resize: str
    img_size: int
    resize_size: int


_PAPER = DatasetDefault("square", 448, 510)
DATASET_DEFAULTS: dict[str, DatasetDefault] = {
    "cub": _PAPER, "aircraft": _PAPER, "cars": _PAPER, "imagefolder": _PAPER,
    "dogs": DatasetDefault("direct", 448, 510),
    # the synthetic images are square: square and shorter give the same pixels
    "synthetic": DatasetDefault("square", 64, 72),
}


def dataset_default(data: str) -> DatasetDefault:
    """The row of :data:`DATASET_DEFAULTS` for ``data``."""
    try:
        return DATASET_DEFAULTS[data]
    except KeyError:
        raise ValueError(f"unknown dataset {data!r}; choose one of {sorted(DATASET_DEFAULTS)}") from None


def default_sizes(data: str) -> tuple[int, int]:
    """``(img_size, resize_size)`` of the dataset's default (448/510 real, 64/72 for the 80 px synthetic set)."""
    d = dataset_default(data)
    return d.img_size, d.resize_size


@dataclass(frozen=True)
class Geometry:
    """How an image becomes the model's ``img_size x img_size`` input.

    ``square``: resize to ``resize_size x resize_size``, crop ``img_size``;
    ``shorter``: shorter side to ``resize_size`` (aspect kept), crop ``img_size``;
    ``direct``: resize to ``img_size x img_size``, no crop (``resize_size == img_size``).
    """

    resize: str
    img_size: int
    resize_size: int

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {self.resize!r}. "
                             "Fix: set resize to one of them (or auto: the dataset's default)")
        if self.img_size <= 0 or self.resize_size < self.img_size:
            raise ValueError(f"need 0 < img_size <= resize_size, got img_size={self.img_size}, "
                             f"resize_size={self.resize_size}. Fix: crop at most the resized size "
                             "(or leave one of the two unset: it follows the dataset's ratio)")
        if self.resize == "direct" and self.resize_size != self.img_size:
            raise ValueError(f"resize 'direct' has no crop: resize_size must equal img_size ({self.img_size}), "
                             f"got {self.resize_size}. Fix: give direct only img_size")

    @property
    def resize_arg(self) -> int | list[int]:
        """The ``size`` torchvision's ``Resize`` gets: an int scales the shorter side, a pair sets both."""
        return self.resize_size if self.resize == "shorter" else [self.resize_size, self.resize_size]

    def resized_wh(self, w: int, h: int) -> tuple[int, int]:
        """Width and height after the resize, as torchvision computes them."""
        if self.resize != "shorter":
            return self.resize_size, self.resize_size
        if w <= h:
            return self.resize_size, int(self.resize_size * h / w)
        return int(self.resize_size * w / h), self.resize_size


def build_transforms(geometry: Geometry, train: bool, color_jitter: float = 0.4) -> Callable:
    """PIL RGB image -> normalised float tensor (3, img_size, img_size).

    Training: random crop (none under ``direct``), horizontal flip, colour jitter;
    evaluation: centre crop (none under ``direct``).
    """
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    crops = geometry.resize != "direct"
    steps: list[Callable] = [T.Resize(geometry.resize_arg)]
    if train:
        steps += [T.RandomCrop(geometry.img_size)] if crops else []
        steps.append(T.RandomHorizontalFlip())
        if color_jitter > 0:
            steps.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    elif crops:
        steps.append(T.CenterCrop(geometry.img_size))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def box_after_eval_transform(
    box: tuple[float, float, float, float], orig_wh: tuple[int, int], img_size: int, resize_size: int,
    resize: str = DATASET_DEFAULTS["cub"].resize,
) -> tuple[float, float, float, float]:
    """Where an ``x, y, w, h`` box lands after the eval transform, clipped to the crop.

    ``resize`` defaults to CUB's (the dataset with boxes). Mirrors torchvision:
    the resized size of :meth:`Geometry.resized_wh`, then the centre-crop offset
    ``round((side - img_size) / 2)``.
    """
    geometry = Geometry(resize, img_size, img_size if resize == "direct" else resize_size)
    w0, h0 = orig_wh
    new_w, new_h = geometry.resized_wh(w0, h0)
    sx, sy = new_w / w0, new_h / h0
    left, top = int(round((new_w - img_size) / 2.0)), int(round((new_h - img_size) / 2.0))
    x, y, w, h = box
    x0 = min(max(x * sx - left, 0.0), float(img_size))
    y0 = min(max(y * sy - top, 0.0), float(img_size))
    x1 = min(max((x + w) * sx - left, 0.0), float(img_size))
    y1 = min(max((y + h) * sy - top, 0.0), float(img_size))
    return (x0, y0, x1 - x0, y1 - y0)
