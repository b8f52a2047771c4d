"""CUB-200-2011 reader (also reads the synthetic set, which uses the same layout)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from fgmodels.data.checks import check_splits, preview
from fgmodels.data.types import DatasetError, DatasetNotFoundError, RawSplits, Sample

T = TypeVar("T")

CUB_LAYOUT = """CUB_200_2011/
  images.txt               <image_id> <class_dir>/<file>.jpg
  image_class_labels.txt   <image_id> <class_id, 1-based>
  train_test_split.txt     <image_id> <1 = train, 0 = test>
  classes.txt              <class_id> <class_name>
  bounding_boxes.txt       <image_id> <x> <y> <w> <h>            (optional)
  parts/part_locs.txt      <image_id> <part_id> <x> <y> <visible>  (optional)
  part_boxes.txt           <image_id> <x> <y> <w> <h>            (optional, synthetic set)
  images/<class_dir>/<file>.jpg"""


def find_root(root: str | Path, marker: str, subdir: str, layout: str, name: str) -> Path:
    """``root`` itself or ``root/subdir``, whichever holds ``marker``."""
    root = Path(root).expanduser()
    for cand in (root, root / subdir):
        if (cand / marker).exists():
            return cand
    raise DatasetNotFoundError(
        f"{name}: no {marker} in {root} or {root / subdir}; data_root must point to a folder laid out as\n{layout}"
    )


def read_rows(path: Path, ncols: int, fmt: str, layout: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line; the last field keeps its spaces."""
    if not path.is_file():
        raise DatasetNotFoundError(f"missing {path}; the dataset folder should look like\n{layout}")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(None, ncols - 1)
        if len(fields) != ncols:
            raise DatasetError(f"{path}:{lineno}: expected '{fmt}', got {line.strip()!r}")
        rows.append((lineno, fields))
    return rows


def read_id_map(path: Path, ncols: int, fmt: str, parse: Callable[[list[str]], T], layout: str) -> dict[str, T]:
    """``{first field: parse(other fields)}``, refusing duplicated ids and unparsable values."""
    out: dict[str, T] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in read_rows(path, ncols, fmt, layout):
        key = fields[0]
        if key in out:
            raise DatasetError(
                f"{path}:{lineno}: duplicated id {key!r} (first at line {first_line[key]}); every id must appear once"
            )
        try:
            out[key] = parse(fields[1:])
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected '{fmt}', got {' '.join(fields)!r}") from None
        first_line[key] = lineno
    return out


def _box(fields: list[str]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in fields)
    return (x, y, w, h)


def _sort_key(image_id: str) -> tuple[int, int | str]:
    return (0, int(image_id)) if image_id.isdigit() else (1, image_id)


def _read_parts(path: Path) -> dict[str, tuple[tuple[int, float, float], ...]]:
    parts: dict[str, list[tuple[int, float, float]]] = {}
    for lineno, f in read_rows(path, 5, "<image_id> <part_id> <x> <y> <visible>", CUB_LAYOUT):
        try:
            if int(float(f[4])):
                parts.setdefault(f[0], []).append((int(f[1]), float(f[2]), float(f[3])))
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected '<image_id> <part_id> <x> <y> <visible>'") from None
    return {k: tuple(v) for k, v in parts.items()}


def load_cub(root: str | Path) -> RawSplits:
    """Read CUB_200_2011 (``root`` or ``root/CUB_200_2011``); labels become 0-based."""
    root = find_root(root, "images.txt", "CUB_200_2011", CUB_LAYOUT, "CUB")
    lay = CUB_LAYOUT
    images = read_id_map(root / "images.txt", 2, "<image_id> <relative path>", lambda f: f[0].strip(), lay)
    labels = read_id_map(root / "image_class_labels.txt", 2, "<image_id> <class_id>", lambda f: int(f[0]), lay)
    is_train = read_id_map(root / "train_test_split.txt", 2, "<image_id> <0|1>", lambda f: int(f[0]), lay)
    classes = read_id_map(root / "classes.txt", 2, "<class_id> <class_name>", lambda f: f[0].strip(), lay)

    class_ids = sorted(classes, key=_sort_key)
    if class_ids != [str(i) for i in range(1, len(class_ids) + 1)]:
        raise DatasetError(f"{root / 'classes.txt'}: class ids must be 1..{len(class_ids)} without gaps, got {preview(class_ids)}")
    # "001.Black_footed_Albatross" -> "Black_footed_Albatross"
    names = [classes[c].split(".", 1)[1] if classes[c].split(".", 1)[0].isdigit() else classes[c] for c in class_ids]

    for other, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        if set(table) != set(images):
            lost = sorted(set(images) - set(table), key=_sort_key)
            extra = sorted(set(table) - set(images), key=_sort_key)
            msg = f"{root / other} disagrees with images.txt:"
            if lost:
                msg += f" {len(lost)} image ids have no entry ({preview(lost)});"
            if extra:
                msg += f" {len(extra)} ids are not in images.txt ({preview(extra)});"
            raise DatasetError(msg + " both files must list the same image ids")
    bad_split = [i for i, v in is_train.items() if v not in (0, 1)]
    if bad_split:
        raise DatasetError(f"{root / 'train_test_split.txt'}: the flag must be 1 (train) or 0 (test); ids {preview(bad_split)}")
    bad_label = [f"id {i}: {v}" for i, v in labels.items() if not 1 <= v <= len(names)]
    if bad_label:
        raise DatasetError(
            f"{root / 'image_class_labels.txt'}: {len(bad_label)} labels outside 1..{len(names)} "
            f"(classes.txt lists {len(names)} classes): {preview(bad_label)}"
        )

    bboxes = {}
    if (root / "bounding_boxes.txt").exists():
        bboxes = read_id_map(root / "bounding_boxes.txt", 5, "<image_id> <x> <y> <w> <h>", _box, lay)
    part_boxes = {}
    if (root / "part_boxes.txt").exists():
        part_boxes = read_id_map(root / "part_boxes.txt", 5, "<image_id> <x> <y> <w> <h>", _box, lay)
    parts = _read_parts(root / "parts" / "part_locs.txt") if (root / "parts" / "part_locs.txt").exists() else {}

    train: list[Sample] = []
    test: list[Sample] = []
    for image_id in sorted(images, key=_sort_key):
        sample = Sample(
            path=str(root / "images" / images[image_id]),
            label=labels[image_id] - 1,
            image_id=image_id,
            bbox=bboxes.get(image_id),
            part_box=part_boxes.get(image_id),
            parts=parts.get(image_id),
        )
        (train if is_train[image_id] else test).append(sample)
    return check_splits(RawSplits(train, test, names), f"CUB at {root}")
