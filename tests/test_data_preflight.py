"""The check before any trial: one report of every bad file, cached decode verdicts,
EXIF orientation and a dataset folder missing on a node. Real files in tmp_path."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgmodels.data import (
    DatasetError, DatasetNotFoundError, ImageListDataset, build_datasets, check_dataset, default_cache_dir, load_cub,
    load_imagefolder, require_local_root,
)
from fgmodels.data import verify
from fgmodels.data.cache import resize_square
from tests.fakes import write_fake_aircraft, write_fake_cub, write_fake_imagefolder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FGVC_CACHE_DIR", str(cache))
    return cache


def _cfg(data: str, root: Path, **kw) -> dict:
    from fgmodels.config import TRAIN_DEFAULTS

    return dict(TRAIN_DEFAULTS, data=data, data_root=str(root), img_size=8, resize_size=10, **kw)


def _listed(base: Path) -> set[str]:
    """Every image path the CUB annotations name, read straight from images.txt."""
    return {str(base / "images" / line.split()[1]) for line in (base / "images.txt").read_text().splitlines()}


def _broken_cub(root: Path) -> tuple[Path, dict[str, str]]:
    """A fake CUB with a truncated JPEG, a 0-byte file and an annotation line for a
    file that is not there; returns (base, {path: expected reason})."""
    base = write_fake_cub(root, num_classes=3, train_per_class=4, test_per_class=2)
    truncated = base / "images" / "001.Bird_0" / "Bird_0_0001.jpg"
    big = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(big).save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:400])
    empty = base / "images" / "002.Bird_1" / "Bird_1_0004.jpg"  # a test image (j >= 4)
    empty.write_bytes(b"")
    for name, line in (("images.txt", "19 003.Bird_2/Bird_2_9999.jpg"), ("image_class_labels.txt", "19 3"),
                       ("train_test_split.txt", "19 1")):
        with (base / name).open("a") as f:
            f.write(line + "\n")
    missing = base / "images" / "003.Bird_2" / "Bird_2_9999.jpg"
    return base, {str(truncated): "truncated", str(empty): "empty", str(missing): "missing"}


def _reported(message: str) -> dict[str, str]:
    """{path: reason} from the indented '  <path>: <reason> (<detail>)' lines of an error."""
    rows = [line.strip().split(": ", 1) for line in message.splitlines() if line.startswith("  ")]
    return {path: rest.split(" (", 1)[0] for path, rest in rows}


def test_one_error_names_every_bad_file_of_every_kind(tmp_path: Path) -> None:
    base, bad = _broken_cub(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:  # a missing file makes it a FileNotFoundError too
        check_dataset(_cfg("cub", tmp_path))
    msg = str(info.value)
    assert _reported(msg) == bad
    assert "3 of 19 image files cannot be used" in msg
    assert msg.rstrip().endswith("or rerun with --set bad_image_policy=skip to train without them.")
    assert "Fix: " in msg


def test_corrupt_files_without_missing_ones_are_a_dataset_error(tmp_path: Path) -> None:
    base, bad = _broken_cub(tmp_path)
    (base / "images" / "003.Bird_2" / "Bird_2_9999.jpg").write_bytes(b"<html>404</html>")
    bad[str(base / "images" / "003.Bird_2" / "Bird_2_9999.jpg")] = "not an image"
    with pytest.raises(DatasetError) as info:
        check_dataset(_cfg("cub", tmp_path))
    assert not isinstance(info.value, FileNotFoundError)
    assert _reported(str(info.value)) == bad


def test_skip_leaves_out_exactly_the_bad_files(tmp_path: Path) -> None:
    base, bad = _broken_cub(tmp_path)
    cfg = _cfg("cub", tmp_path, bad_image_policy="skip")
    report = check_dataset(cfg)
    assert {b.path: b.reason for b in report.skipped} == bad
    assert report.checked == 19
    prefix, listed = report.summary().split(": ", 1)
    assert prefix == "skipped 3 files"
    names = {f"{os.path.relpath(p, tmp_path)} ({why})" for p, why in bad.items()}  # relative to data_root
    assert set(listed.split(", ")) == names

    bundle = build_datasets(cfg)
    used = [s.path for d in (bundle.train, bundle.val, bundle.test) for s in d.samples]
    assert sorted(used) == sorted(_listed(base) - set(bad))
    assert {b.path for b in bundle.skipped} == set(bad)


def test_skip_also_catches_images_shorter_than_the_aircraft_banner(tmp_path: Path) -> None:
    write_fake_aircraft(tmp_path, per_split=(2, 1, 2))
    short = tmp_path / "fgvc-aircraft-2013b" / "data" / "images" / "1000001.jpg"
    Image.new("RGB", (16, 20)).save(short, format="PNG")  # exactly the banner's height: nothing left
    report = check_dataset(_cfg("aircraft", tmp_path, bad_image_policy="skip"))
    assert [(b.path, b.reason) for b in report.skipped] == [(str(short), "too small")]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = verify.decode_check

    def counting(path: str):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(verify, "decode_check", counting)
    return seen


def test_second_check_decodes_nothing_and_a_touched_file_is_rechecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path
) -> None:
    base = write_fake_cub(tmp_path / "data", num_classes=3, train_per_class=20, test_per_class=4)
    cfg = _cfg("cub", tmp_path / "data")
    every = _listed(base)
    assert len(every) == 72  # enough for the thread pool (64 and more)
    seen = _count_decodes(monkeypatch)

    first = check_dataset(cfg, workers=2)
    assert sorted(seen) == sorted(every) and first.decoded == 72
    seen.clear()
    second = check_dataset(cfg, workers=2)
    assert seen == [] and second.decoded == 0
    build_datasets(cfg)  # the trial's own check: a cache hit too
    assert seen == []

    touched = base / "images" / "002.Bird_1" / "Bird_1_0003.jpg"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = check_dataset(cfg, workers=2)
    assert seen == [str(touched)] and third.decoded == 1

    files = list((_own_cache / "verified").iterdir())
    assert [f.suffix for f in files if not f.name.endswith(".lock")] == [".json"]  # no temp file left behind
    entries = json.loads(next(f for f in files if f.suffix == ".json").read_text())["entries"]
    assert set(entries) == every


def test_a_cached_bad_verdict_is_still_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, bad = _broken_cub(tmp_path)
    cfg = _cfg("cub", tmp_path, bad_image_policy="skip")
    check_dataset(cfg)
    seen = _count_decodes(monkeypatch)
    again = check_dataset(cfg)
    assert seen == [] and {b.path: b.reason for b in again.skipped} == bad


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir("pixels") == tmp_path / "cache" / "pixels"
    monkeypatch.delenv("FGVC_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir("verified") == tmp_path / "home" / ".cache" / "fgvc_search" / "verified"


# ---------------------------------------------------------------- EXIF orientation

def _sideways_photo(path: Path) -> np.ndarray:
    """A 16 x 8 JPEG (left half red, right half blue) tagged EXIF orientation 6
    ("turn 90 degrees clockwise to display"); returns the upright pixels."""
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8] = (255, 0, 0)
    stored[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    return stored


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(float) - b.astype(float)).mean()) < 12


def test_imagefolder_turns_exif_rotated_photos_upright_in_both_pipelines(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path, num_classes=2, train_per_class=2, test_per_class=1)
    photo = tmp_path / "train" / "class_0" / "img_0.jpg"
    upright = np.rot90(_sideways_photo(photo), k=-1)  # clockwise: red on top, blue below, 8 wide x 16 high
    sample = next(s for s in load_imagefolder(tmp_path).train if s.path == str(photo))

    image, _ = ImageListDataset([sample], transform=None)[0]
    assert _close(np.asarray(image), upright)
    square, (rh, rw, _, _) = resize_square(sample, 8, "shorter")
    assert (rh, rw) == (16, 8)  # the pixel cache sees the upright image too
    assert _close(square[:3], np.broadcast_to(np.array([255, 0, 0], np.uint8), (3, 8, 3)))
    assert _close(square[-3:], np.broadcast_to(np.array([0, 0, 255], np.uint8), (3, 8, 3)))


def test_cub_keeps_stored_pixels_because_its_boxes_use_them(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    photo = base / "images" / "001.Bird_0" / "Bird_0_0000.jpg"
    stored = _sideways_photo(photo)
    sample = next(s for s in load_cub(tmp_path).train if s.path == str(photo))

    image, _ = ImageListDataset([sample], transform=None)[0]
    assert _close(np.asarray(image), stored)
    _, (rh, rw, _, _) = resize_square(sample, 8, "shorter")
    assert (rh, rw) == (8, 16)


# ---------------------------------------------------------------- dataset on this node

def test_require_local_root_names_the_folder_and_the_node(tmp_path: Path) -> None:
    gone = tmp_path / "nfs" / "cub"
    expected = (f"dataset folder {gone} is not visible on this node ({socket.gethostname()}). "
                "Fix: put the dataset on shared storage or copy it to every node at the same path")
    with pytest.raises(DatasetNotFoundError) as info:
        require_local_root(_cfg("cub", gone))
    assert str(info.value) == expected and isinstance(info.value, FileNotFoundError)

    gone.mkdir(parents=True)  # an unmounted mount point: the folder exists but is empty
    with pytest.raises(DatasetNotFoundError, match="not visible on this node"):
        require_local_root(_cfg("cub", gone))

    write_fake_cub(gone)
    require_local_root(_cfg("cub", gone))
    require_local_root(_cfg("synthetic", tmp_path / "not_yet_generated"))  # made wherever it is needed
