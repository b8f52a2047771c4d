"""Tiny on-disk copies of each real dataset layout, for the tests of every package.

Each writer returns the root to hand to the matching loader; images are a few
pixels wide, coloured by class, so everything runs in milliseconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def tiny_image(path: Path, label: int, index: int, size: tuple[int, int] = (16, 12)) -> None:
    """A small JPEG whose colour depends on the label (and a little on the index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((label * 67) % 256, (label * 131 + 40) % 256, (index * 29) % 256)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=90)


def write_fake_cub(root: Path, num_classes: int = 3, train_per_class: int = 4, test_per_class: int = 2) -> Path:
    """``root/CUB_200_2011`` with every annotation file of the real set."""
    base = Path(root) / "CUB_200_2011"
    rows: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "bbox", "parts")}
    image_id = 0
    for k in range(num_classes):
        folder = f"{k + 1:03d}.Bird_{k}"
        for j in range(train_per_class + test_per_class):
            image_id += 1
            rel = f"{folder}/Bird_{k}_{j:04d}.jpg"
            tiny_image(base / "images" / rel, k, j)
            rows["images"].append(f"{image_id} {rel}")
            rows["labels"].append(f"{image_id} {k + 1}")
            rows["split"].append(f"{image_id} {int(j < train_per_class)}")
            rows["bbox"].append(f"{image_id} 1.0 2.0 10.0 8.0")
            rows["parts"] += [f"{image_id} 1 3.0 4.0 1", f"{image_id} 2 0.0 0.0 0"]
    files = {
        "images.txt": rows["images"], "image_class_labels.txt": rows["labels"],
        "train_test_split.txt": rows["split"], "bounding_boxes.txt": rows["bbox"],
        "parts/part_locs.txt": rows["parts"],
        "classes.txt": [f"{k + 1} {k + 1:03d}.Bird_{k}" for k in range(num_classes)],
    }
    for name, lines in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text("\n".join(lines) + "\n")
    return base


AIRCRAFT_CLASSES = ["707-320", "A300B4", "Boeing 737-700", "F-16A/B"]  # real names contain spaces and slashes


AIRCRAFT_FAKE_SIZE = (16, 32)  # w, h: 12 rows of "aircraft" above the 20-row banner
BANNER_COLOUR = (255, 255, 255)


def aircraft_image(path: Path, label: int, index: int) -> None:
    """Like :func:`tiny_image`, plus the real set's 20-row copyright banner at the bottom (white)."""
    tiny_image(path, label, index, AIRCRAFT_FAKE_SIZE)
    w, h = AIRCRAFT_FAKE_SIZE
    with Image.open(path) as im:
        im = im.convert("RGB")
    im.paste(BANNER_COLOUR, (0, h - 20, w, h))
    im.save(path, format="PNG")  # lossless: the banner edge stays sharp for the tests


def write_fake_aircraft(root: Path, per_split: tuple[int, int, int] = (2, 1, 2)) -> Path:
    """``root/fgvc-aircraft-2013b/data`` with variant/family/manufacturer lists (only variant used)."""
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(AIRCRAFT_CLASSES) + "\n")
    n = 0
    for split, count in zip(("train", "val", "test"), per_split):
        lines = []
        for k, name in enumerate(AIRCRAFT_CLASSES):
            for j in range(count):
                n += 1
                image = f"{1000000 + n:07d}"
                aircraft_image(data / "images" / f"{image}.jpg", k, j)
                lines.append(f"{image} {name}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def _cars_annotations(fnames: list[str], labels: list[int]) -> np.ndarray:
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    arr = np.zeros(len(fnames), dtype=fields)
    for i, (f, lab) in enumerate(zip(fnames, labels)):
        arr[i] = (1, 1, 10, 8, lab, f)
    return arr


def write_fake_cars(root: Path, num_classes: int = 3, train_per_class: int = 3, test_per_class: int = 2) -> Path:
    """``root/stanford_cars`` as torchvision's StanfordCars expects (test reuses train file names)."""
    import scipy.io as sio

    base = Path(root) / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array([f"Car Make {k} 2012" for k in range(num_classes)], dtype=object)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names[None, :]})
    for split, per, mat in (
        ("train", train_per_class, base / "devkit" / "cars_train_annos.mat"),
        ("test", test_per_class, base / "cars_test_annos_withlabels.mat"),
    ):
        fnames, labels = [], []
        for k in range(num_classes):
            for j in range(per):
                fnames.append(f"{len(fnames) + 1:05d}.jpg")
                labels.append(k + 1)
                tiny_image(base / f"cars_{split}" / fnames[-1], k, j)
        sio.savemat(mat, {"annotations": _cars_annotations(fnames, labels)})
    return Path(root)


def write_fake_dogs(root: Path, num_classes: int = 3, train_per_class: int = 3, test_per_class: int = 2) -> Path:
    """``root/Images/<wnid>-<breed>/`` plus ``train_list.mat``/``test_list.mat`` (1-based labels)."""
    import scipy.io as sio

    root = Path(root)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        files, labels = [], []
        for k in range(num_classes):
            folder = f"n0208{k:04d}-Breed_{k}"
            for j in range(per):
                rel = f"{folder}/n0208{k:04d}_{split}{j}.jpg"
                tiny_image(root / "Images" / rel, k, j)
                files.append(rel)
                labels.append(k + 1)
        sio.savemat(root / f"{split}_list.mat", {
            "file_list": np.array(files, dtype=object)[:, None],
            "annotation_list": np.array([f[:-4] for f in files], dtype=object)[:, None],
            "labels": np.array(labels, dtype=np.uint8)[:, None],
        })
    return root


def write_fake_imagefolder(root: Path, num_classes: int = 3, train_per_class: int = 3, test_per_class: int = 2) -> Path:
    root = Path(root)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        for k in range(num_classes):
            for j in range(per):
                tiny_image(root / split / f"class_{k}" / f"img_{j}.jpg", k, j)
    return root
