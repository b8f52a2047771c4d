"""Data faults (issue 11): odd image modes, corrupt files and inconsistent annotations,
each written to disk for real and checked by the message it produces."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgmodels.data import (
    DatasetError, DatasetNotFoundError, ImageListDataset, Sample, build_datasets, check_dataset, load_cub,
    load_imagefolder, load_rgb, verify_samples,
)
from tests.fakes import write_fake_cub, write_fake_imagefolder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image verdicts go to this test's folder, not to the user's cache."""
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))


def _cfg(data: str, root: Path, **kw) -> dict:
    from fgmodels.config import TRAIN_DEFAULTS

    return dict(TRAIN_DEFAULTS, data=data, data_root=str(root), img_size=8, resize_size=10, **kw)


# ---------------------------------------------------------------- image modes

def test_odd_modes_load_as_rgb(tmp_path: Path) -> None:
    grey = tmp_path / "grey.jpg"
    Image.new("L", (6, 5), 128).save(grey)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (6, 5), (0, 255, 255, 0)).save(cmyk, quality=100)  # pure red in CMYK
    rgba = tmp_path / "alpha.png"
    a = np.zeros((5, 6, 4), np.uint8)
    a[..., :3] = (10, 20, 30)
    a[:, :3, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(a, "RGBA").save(rgba)
    pal = tmp_path / "palette.png"
    p = Image.new("P", (6, 5), 1)
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    p.save(pal)
    pal_t = tmp_path / "palette_transparent.gif"
    p.save(pal_t, transparency=1)
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((5, 6), 65535 // 2, np.uint16)).save(grey16)
    one_bit = tmp_path / "bw.png"
    Image.new("1", (6, 5), 1).save(one_bit)

    expect = {
        grey: (128, 128, 128),
        cmyk: (255, 0, 0),
        pal: (200, 100, 50),
        pal_t: (255, 255, 255),  # transparent pixels go on white
        grey16: (127, 127, 127),  # 16-bit rescaled, not clipped to white
        one_bit: (255, 255, 255),
    }
    for path, rgb in expect.items():
        im = load_rgb(str(path))
        assert im.mode == "RGB" and im.size == (6, 5), path
        assert np.abs(np.asarray(im, np.int16) - np.array(rgb)).max() <= 3, (path, np.asarray(im)[0, 0])
    arr = np.asarray(load_rgb(str(rgba)))
    assert (arr[:, :3] == (10, 20, 30)).all() and (arr[:, 3:] == 255).all()

    ds = ImageListDataset([Sample(str(p), 0) for p in expect], transform=None)
    assert all(ds[i][0].mode == "RGB" for i in range(len(ds)))


# ---------------------------------------------------------------- corrupt files

def _corrupt_files(folder: Path) -> dict[str, str]:
    """Writes four bad images; returns {path: expected reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    bad = {
        folder / "truncated.jpg": (data[: len(data) // 2], "truncated"),
        folder / "garbage.jpg": (b"definitely not a jpeg" * 20, "not an image"),
        folder / "empty.jpg": (b"", "empty"),
    }
    png = folder / "truncated.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(png)
    bad[png] = (png.read_bytes()[:300], "truncated")
    for path, (raw, _) in bad.items():
        path.write_bytes(raw)
    return {str(p): why for p, (_, why) in bad.items()}


def test_verify_samples_reports_each_bad_file(tmp_path: Path) -> None:
    bad = _corrupt_files(tmp_path)
    samples = [Sample(str(tmp_path / "good.jpg"), 0)] + [Sample(p, 0) for p in bad]
    samples.append(Sample(str(tmp_path / "gone.jpg"), 0))
    found, decoded = verify_samples(samples, tmp_path)
    assert {b.path: b.reason for b in found} == {**bad, str(tmp_path / "gone.jpg"): "missing"}
    assert decoded == 4  # good + garbage + the two truncated: missing and empty files need no decode


def _imagefolder_with_bad_images(root: Path) -> dict[str, str]:
    write_fake_imagefolder(root, num_classes=2, train_per_class=4, test_per_class=2)
    bad = _corrupt_files(root / "train" / "class_1")
    (root / "train" / "class_1" / "good.jpg").unlink()
    return bad


def test_policy_fail_lists_every_bad_path(tmp_path: Path) -> None:
    bad = _imagefolder_with_bad_images(tmp_path)
    with pytest.raises(DatasetError) as info:
        build_datasets(_cfg("imagefolder", tmp_path, bad_image_policy="fail"))
    msg = str(info.value)
    assert "4 of 16 image files cannot be used" in msg and "--set bad_image_policy=skip" in msg
    for path, why in bad.items():
        assert f"{path}: {why}" in msg


def test_policy_skip_drops_and_counts(tmp_path: Path) -> None:
    bad = _imagefolder_with_bad_images(tmp_path)
    bundle = build_datasets(_cfg("imagefolder", tmp_path, bad_image_policy="skip", val_fraction=0.25))
    assert {b.path: b.reason for b in bundle.skipped} == bad
    kept = {s.path for d in (bundle.train, bundle.val) for s in d.samples}
    assert len(kept) == 8 and not kept & set(bad)
    for i in range(len(bundle.train)):  # every remaining image decodes
        assert bundle.train[i][0].shape == (3, 8, 8)


def test_skip_that_empties_a_class_is_an_error(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path, num_classes=2, train_per_class=1, test_per_class=1)
    (tmp_path / "train" / "class_1" / "img_0.jpg").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=r"after skipping.*'class_1' \(label 2\)"):
        build_datasets(_cfg("imagefolder", tmp_path, bad_image_policy="skip"))


def test_dataset_reports_runtime_bad_image(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    samples = [Sample(str(bad), 0), Sample(str(good), 1)]
    with pytest.raises(DatasetError, match=f"cannot read image {bad}"):
        ImageListDataset(samples, None, "fail")[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, label = ImageListDataset(samples, None, "skip")[0]
    assert label == 1 and np.asarray(image)[0, 0].tolist() == [1, 2, 3]
    assert any(str(bad) in str(w.message) for w in caught)


# ---------------------------------------------------------------- annotations vs disk

def test_listed_file_missing(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    gone = base / "images" / "002.Bird_1" / "Bird_1_0003.jpg"
    gone.unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset(_cfg("cub", tmp_path))
    assert isinstance(info.value, FileNotFoundError)
    assert "1 of 18 image files cannot be used" in str(info.value) and f"{gone}: missing" in str(info.value)


def test_duplicated_image_id(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    lines = (base / "images.txt").read_text().splitlines()
    lines[4] = "2 001.Bird_0/Bird_0_0004.jpg"
    (base / "images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"images.txt:5: duplicated id '2' \(first at line 2\)"):
        load_cub(tmp_path)


def test_same_image_listed_twice(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    lines = (base / "images.txt").read_text().splitlines()
    lines[1] = "2 " + lines[0].split()[1]  # id 2 points at image 1's file
    (base / "images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="1 duplicated image paths"):
        load_cub(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path, num_classes=3)
    lines = (base / "image_class_labels.txt").read_text().splitlines()
    lines[0], lines[1] = "1 4", "2 0"
    (base / "image_class_labels.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        load_cub(tmp_path)
    msg = str(info.value)
    assert "2 labels outside 1..3" in msg and "classes.txt lists 3 classes" in msg and "id 1: 4" in msg


def test_empty_class(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path, num_classes=3)
    with (base / "classes.txt").open("a") as f:
        f.write("4 004.Ghost_Bird\n")
    with pytest.raises(DatasetError, match=r"1 classes have no training images: 'Ghost_Bird' \(label 4\)"):
        load_cub(tmp_path)


def test_empty_class_folder(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path, num_classes=2)
    (tmp_path / "train" / "class_9").mkdir()
    with pytest.raises(DatasetError, match=r"'class_9' \(label 3\)"):
        load_imagefolder(tmp_path)


def test_label_file_disagrees_with_images(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    lines = (base / "image_class_labels.txt").read_text().splitlines()
    (base / "image_class_labels.txt").write_text("\n".join(lines[:-1] + ["99 1"]) + "\n")
    with pytest.raises(DatasetError) as info:
        load_cub(tmp_path)
    msg = str(info.value)
    assert "disagrees with images.txt" in msg and "1 image ids have no entry (18)" in msg and "(99)" in msg


def test_test_class_unknown_to_train(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path, num_classes=2)
    Image.new("RGB", (4, 4)).save(tmp_path / "extra.jpg")
    (tmp_path / "test" / "zebra").mkdir()
    (tmp_path / "extra.jpg").rename(tmp_path / "test" / "zebra" / "a.jpg")
    with pytest.raises(DatasetError, match="class folders that are not in .*train.*zebra"):
        load_imagefolder(tmp_path)
