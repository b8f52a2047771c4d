"""Readers for FGVC-Aircraft, Stanford Cars, Stanford Dogs and plain image folders.

Aircraft and Cars go through torchvision's own dataset classes (download=False),
so we parse the files exactly as the reference implementation does; we only add
clear errors and the common :class:`RawSplits` form.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fgmodels.data.checks import check_splits, preview
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits, Sample

AIRCRAFT_LAYOUT = """<data_root>/fgvc-aircraft-2013b/data/
  variants.txt | families.txt | manufacturers.txt   one class name per line
  images_<level>_train.txt, _val.txt, _test.txt    <image_name> <class name>
  images/<image_name>.jpg"""

CARS_LAYOUT = """<data_root>/stanford_cars/
  devkit/cars_meta.mat             class_names
  devkit/cars_train_annos.mat      annotations (fname, class 1-based, bbox_*)
  cars_test_annos_withlabels.mat   annotations of the test set
  cars_train/<fname>.jpg
  cars_test/<fname>.jpg"""

DOGS_LAYOUT = """<data_root>/
  Images/<wnid>-<breed>/<file>.jpg
  train_list.mat   file_list (paths relative to Images/), labels (1-based)
  test_list.mat    the same for the test set
  (the .mat files may also sit in <data_root>/lists/)"""

IMAGEFOLDER_LAYOUT = """<data_root>/
  train/<class_name>/<image>.jpg|png|...
  test/<class_name>/<image>.jpg|png|..."""


def _require(paths: list[Path], name: str, layout: str) -> None:
    for p in paths:
        if not p.exists():
            raise DatasetNotFoundError(f"{name}: missing {p}; data_root must be laid out as\n{layout}")


def _parent_of(root: str | Path, folder: str) -> Path:
    """Accept both ``<data_root>`` and ``<data_root>/<folder>`` for torchvision's layouts."""
    root = Path(root).expanduser()
    if not (root / folder).exists() and root.name == folder:
        return root.parent
    return root


AIRCRAFT_LEVELS = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}


# Every FGVC-Aircraft image carries a 20-pixel copyright banner at the bottom
# (see the dataset's README); it is not part of the aircraft, so it is cut off.
AIRCRAFT_BANNER_PX = 20


def load_aircraft(root: str | Path, annotation_level: str = "variant") -> RawSplits:
    """FGVC-Aircraft 2013b; the official train+val lists form our train pool."""
    from torchvision.datasets import FGVCAircraft

    if annotation_level not in AIRCRAFT_LEVELS:
        raise DatasetError(f"annotation_level must be one of {sorted(AIRCRAFT_LEVELS)}, got {annotation_level!r}")
    root = _parent_of(root, "fgvc-aircraft-2013b")
    data = root / "fgvc-aircraft-2013b" / "data"
    lists = [data / f"images_{annotation_level}_{s}.txt" for s in ("train", "val", "test")]
    _require([data / AIRCRAFT_LEVELS[annotation_level], *lists, data / "images"], "FGVC-Aircraft", AIRCRAFT_LAYOUT)

    splits: dict[str, list[Sample]] = {}
    classes: list[str] = []
    for split, list_file in zip(("train", "val", "test"), lists):
        try:
            ds = FGVCAircraft(str(root), split=split, annotation_level=annotation_level, download=False)
        except KeyError as err:
            raise DatasetError(
                f"{list_file} names class {err.args[0]!r}, which is not in {AIRCRAFT_LEVELS[annotation_level]}"
            ) from None
        except ValueError as err:
            raise DatasetError(f"{list_file}: every line must be '<image_name> <class name>' ({err})") from None
        if "" in ds.classes:
            raise DatasetError(f"{data / AIRCRAFT_LEVELS[annotation_level]} has a blank line; remove it")
        classes = ds.classes
        splits[split] = [
            Sample(path=path, label=int(label), image_id=Path(path).stem, trim_bottom=AIRCRAFT_BANNER_PX)
            for path, label in zip(ds._image_files, ds._labels)
        ]
    raw = RawSplits(splits["train"] + splits["val"], splits["test"], list(classes))
    return check_splits(raw, f"FGVC-Aircraft at {data}")


def load_cars(root: str | Path) -> RawSplits:
    """Stanford Cars in torchvision's layout; ``image_id`` is ``<split>/<fname>``
    because the official train and test folders reuse the same file names."""
    from torchvision.datasets import StanfordCars

    root = _parent_of(root, "stanford_cars")
    base = root / "stanford_cars"
    _require(
        [base / "devkit" / "cars_meta.mat", base / "devkit" / "cars_train_annos.mat",
         base / "cars_test_annos_withlabels.mat", base / "cars_train", base / "cars_test"],
        "Stanford Cars", CARS_LAYOUT,
    )
    splits: dict[str, list[Sample]] = {}
    classes: list[str] = []
    for split in ("train", "test"):
        try:
            ds = StanfordCars(str(root), split=split, download=False)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise DatasetError(
                f"Stanford Cars at {base}: cannot parse the {split} annotations ({type(err).__name__}: {err}); "
                f"expected\n{CARS_LAYOUT}"
            ) from None
        classes = [str(c) for c in ds.classes]
        splits[split] = [
            Sample(path=path, label=int(label), image_id=f"{split}/{Path(path).name}") for path, label in ds._samples
        ]
    return check_splits(RawSplits(splits["train"], splits["test"], classes), f"Stanford Cars at {base}")


def _load_mat_list(path: Path) -> tuple[list[str], list[int]]:
    import scipy.io as sio

    try:
        mat = sio.loadmat(str(path), squeeze_me=True)
        files = [str(f) for f in np.atleast_1d(mat["file_list"])]
        labels = [int(v) for v in np.atleast_1d(mat["labels"])]
    except KeyError as err:
        raise DatasetError(f"{path} has no variable {err.args[0]!r}; expected file_list and labels") from None
    except (ValueError, TypeError, OSError) as err:
        raise DatasetError(f"{path} is not a readable .mat list ({err}); expected file_list and labels") from None
    if len(files) != len(labels):
        raise DatasetError(f"{path}: file_list has {len(files)} entries but labels has {len(labels)}")
    return files, labels


def load_dogs(root: str | Path) -> RawSplits:
    """Stanford Dogs; class names come from the ``<wnid>-<breed>`` folder of each label."""
    root = Path(root).expanduser()
    lists_dir = root if (root / "train_list.mat").exists() else root / "lists"
    _require([root / "Images", lists_dir / "train_list.mat", lists_dir / "test_list.mat"], "Stanford Dogs", DOGS_LAYOUT)

    raw_lists = {s: _load_mat_list(lists_dir / f"{s}_list.mat") for s in ("train", "test")}
    folder_of: dict[int, set[str]] = {}
    for split, (files, labels) in raw_lists.items():
        bad = [f"{f}: {lab}" for f, lab in zip(files, labels) if lab < 1]
        if bad:
            raise DatasetError(f"{lists_dir / f'{split}_list.mat'}: labels are 1-based, got {preview(bad)}")
        for f, lab in zip(files, labels):
            folder_of.setdefault(lab, set()).add(f.replace("\\", "/").split("/")[0])
    clash = {lab: sorted(d) for lab, d in folder_of.items() if len(d) > 1}
    if clash:
        raise DatasetError(f"Stanford Dogs at {root}: one label spans several class folders: {preview(clash.items())}")
    num_classes = max(folder_of)
    names = []
    for lab in range(1, num_classes + 1):
        folder = next(iter(folder_of.get(lab, {f"missing_class_{lab}"})))
        names.append(folder.split("-", 1)[1] if "-" in folder else folder)

    splits = {
        split: [
            Sample(path=str(root / "Images" / f), label=lab - 1, image_id=f.replace("\\", "/"))
            for f, lab in zip(files, labels)
        ]
        for split, (files, labels) in raw_lists.items()
    }
    return check_splits(RawSplits(splits["train"], splits["test"], names), f"Stanford Dogs at {root}")


def _image_files(folder: Path) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMG_EXTENSIONS
    )


def load_imagefolder(root: str | Path) -> RawSplits:
    """``root/train/<class>/*`` and ``root/test/<class>/*``; classes are the sorted train folders.

    These are often phone photos, whose pixels are stored sideways with an EXIF
    orientation tag: they are turned upright on load (there are no boxes whose
    coordinates would then be wrong, unlike the annotated layouts)."""
    root = Path(root).expanduser()
    _require([root / "train", root / "test"], "image folder", IMAGEFOLDER_LAYOUT)
    names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(
        d.name for d in (root / "test").iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in index
    )
    if unknown:
        raise DatasetError(
            f"{root / 'test'} has class folders that are not in {root / 'train'}: {preview(unknown)}; "
            "every test class needs training images"
        )

    def scan(split: str) -> list[Sample]:
        out = []
        for name in names:
            folder = root / split / name
            if folder.is_dir():
                for p in _image_files(folder):
                    out.append(Sample(path=str(p), label=index[name], image_id=f"{split}/{p.relative_to(root / split)}",
                                      exif_transpose=True))
        return out

    return check_splits(RawSplits(scan("train"), scan("test"), names), f"image folder {root}")


def describe_layouts() -> dict[str, Any]:
    """Expected layouts, for help texts and error messages elsewhere."""
    from fgmodels.data.cub import CUB_LAYOUT

    return {"cub": CUB_LAYOUT, "aircraft": AIRCRAFT_LAYOUT, "cars": CARS_LAYOUT, "dogs": DOGS_LAYOUT,
            "imagefolder": IMAGEFOLDER_LAYOUT}


__all__ = ["load_aircraft", "load_cars", "load_dogs", "load_imagefolder", "describe_layouts"]
