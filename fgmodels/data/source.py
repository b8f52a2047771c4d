"""Which reader a config names, and whether its folder is there on this node."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable, Mapping

from fgmodels.data.cub import CUB_LAYOUT, load_cub
from fgmodels.data.loaders import (
    AIRCRAFT_LAYOUT, CARS_LAYOUT, DOGS_LAYOUT, IMAGEFOLDER_LAYOUT,
    load_aircraft, load_cars, load_dogs, load_imagefolder,
)
from fgmodels.data.synthetic import ensure_synthetic
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits

LOADERS: dict[str, tuple[Callable[[Any], RawSplits], str]] = {
    "cub": (load_cub, CUB_LAYOUT),
    "aircraft": (load_aircraft, AIRCRAFT_LAYOUT),
    "cars": (load_cars, CARS_LAYOUT),
    "dogs": (load_dogs, DOGS_LAYOUT),
    "imagefolder": (load_imagefolder, IMAGEFOLDER_LAYOUT),
}
SYNTHETIC_BASE_SIZE = 80  # default_sizes("synthetic") is meant for 80 px images


def load_raw(cfg: Mapping[str, Any]) -> tuple[RawSplits, Path]:
    """The dataset named by ``cfg["data"]``; the synthetic one is generated on demand.

    Reads the layout and annotations only: whether each image file is there and
    decodes is :func:`fgmodels.data.check_dataset`'s job, so that one report
    names every bad file of every kind.
    """
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


def require_local_root(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`DatasetNotFoundError` naming this node if the dataset folder is not here.

    On a cluster a trial may land on a node where the dataset was never copied,
    or where the shared mount is missing (an unmounted mount point is an empty
    folder). Said in one line before the first epoch, this beats a layout error
    that reads as if the dataset itself were broken. The synthetic set is
    generated wherever it is needed, so it always passes.
    """
    root = cfg.get("data_root")
    if cfg.get("data", "synthetic") == "synthetic" or not root:
        return
    path = Path(root).expanduser()
    if not (path.is_dir() and any(path.iterdir())):
        raise DatasetNotFoundError(
            f"dataset folder {path} is not visible on this node ({socket.gethostname()}). "
            "Fix: put the dataset on shared storage or copy it to every node at the same path"
        )


__all__ = ["LOADERS", "SYNTHETIC_BASE_SIZE", "load_raw", "require_local_root"]
