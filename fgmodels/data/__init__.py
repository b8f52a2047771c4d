"""Datasets, splits and transforms for FGVC training (real layouts and a synthetic set)."""
from fgmodels.data.checks import check_splits
from fgmodels.data.cub import load_cub
from fgmodels.data.dataset import DataBundle, ImageListDataset, build_datasets, load_raw, resolve_sizes
from fgmodels.data.imageio import load_rgb, to_rgb, verify_images
from fgmodels.data.loaders import load_aircraft, load_cars, load_dogs, load_imagefolder
from fgmodels.data.split import stratified_split
from fgmodels.data.synthetic import ensure_synthetic
from fgmodels.data.transforms import box_after_eval_transform, build_transforms, default_sizes
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits, Sample

__all__ = [
    "DataBundle", "DatasetError", "DatasetNotFoundError", "ImageListDataset", "RawSplits", "Sample",
    "box_after_eval_transform", "build_datasets", "build_transforms", "check_splits", "default_sizes",
    "ensure_synthetic", "load_aircraft", "load_cars", "load_cub", "load_dogs", "load_imagefolder",
    "load_raw", "load_rgb", "resolve_sizes", "stratified_split", "to_rgb", "verify_images",
]
