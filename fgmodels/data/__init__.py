"""Datasets, splits and transforms for FGVC training (real layouts and a synthetic set)."""
from fgmodels.data.cachedir import default_cache_dir
from fgmodels.data.checks import check_splits
from fgmodels.data.cub import load_cub
from fgmodels.data.dataset import DataBundle, ImageListDataset, build_datasets, resolve_geometry, resolve_sizes
from fgmodels.data.imageio import load_rgb, to_rgb
from fgmodels.data.loaders import load_aircraft, load_cars, load_dogs, load_imagefolder
from fgmodels.data.preflight import DataReport, check_dataset
from fgmodels.data.source import load_raw, require_local_root
from fgmodels.data.split import stratified_split
from fgmodels.data.synthetic import ensure_synthetic
from fgmodels.data.transforms import (
    RESIZE_MODES, Geometry, box_after_eval_transform, build_transforms, dataset_default, default_sizes,
)
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits, Sample
from fgmodels.data.verify import BadFile, verify_samples

__all__ = [
    "RESIZE_MODES", "BadFile", "DataBundle", "DataReport", "DatasetError", "DatasetNotFoundError", "Geometry",
    "ImageListDataset", "RawSplits", "Sample", "box_after_eval_transform", "build_datasets", "build_transforms",
    "check_dataset", "check_splits", "dataset_default", "default_cache_dir", "default_sizes", "ensure_synthetic",
    "load_aircraft", "load_cars", "load_cub", "load_dogs", "load_imagefolder", "load_raw", "load_rgb",
    "require_local_root", "resolve_geometry", "resolve_sizes", "stratified_split", "to_rgb", "verify_samples",
]
