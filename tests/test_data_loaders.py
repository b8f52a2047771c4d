"""Each real dataset layout, faked on disk, read by its loader and split for training."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fgmodels.data import (
    DatasetError, DatasetNotFoundError, build_datasets, load_aircraft, load_cars, load_cub, load_dogs,
    load_imagefolder,
)
from tests.fakes import (
    AIRCRAFT_CLASSES, write_fake_aircraft, write_fake_cars, write_fake_cub, write_fake_dogs, write_fake_imagefolder,
)


def _cfg(data: str, root: Path, **kw) -> dict:
    from fgmodels.config import TRAIN_DEFAULTS

    return dict(TRAIN_DEFAULTS, data=data, data_root=str(root), img_size=8, resize_size=10, **kw)


def _check_labels_match_folders(samples, folder_of_label) -> None:
    for s in samples:
        assert folder_of_label(s.label) in s.path, (s.label, s.path)


def test_cub_layout(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path, num_classes=3, train_per_class=4, test_per_class=2)
    for root in (tmp_path, base):  # both the parent and CUB_200_2011 itself are accepted
        raw = load_cub(root)
        assert raw.class_names == ["Bird_0", "Bird_1", "Bird_2"]
        assert len(raw.train) == 12 and len(raw.test) == 6
        assert Counter(s.label for s in raw.train) == {0: 4, 1: 4, 2: 4}
        _check_labels_match_folders(raw.train + raw.test, lambda k: f"{k + 1:03d}.Bird_{k}/")
    s = raw.train[0]
    assert s.image_id == "1" and s.bbox == (1.0, 2.0, 10.0, 8.0)
    assert s.parts == ((1, 3.0, 4.0),)  # the invisible part (visible=0) is dropped
    assert s.part_box is None


def test_aircraft_layout_merges_train_and_val(tmp_path: Path) -> None:
    write_fake_aircraft(tmp_path, per_split=(2, 1, 2))
    for root in (tmp_path, tmp_path / "fgvc-aircraft-2013b"):
        raw = load_aircraft(root)
        assert raw.class_names == AIRCRAFT_CLASSES
        assert len(raw.train) == 4 * 3 and len(raw.test) == 4 * 2
        assert Counter(s.label for s in raw.train) == {k: 3 for k in range(4)}
    # Labels come from the class *names* in the list files (which contain spaces).
    lines = (tmp_path / "fgvc-aircraft-2013b/data/images_variant_train.txt").read_text().split("\n")
    by_id = {s.image_id: s.label for s in raw.train}
    for line in filter(None, lines):
        image, name = line.split(" ", 1)
        assert by_id[image] == AIRCRAFT_CLASSES.index(name)
    with pytest.raises(DatasetError, match="annotation_level"):
        load_aircraft(tmp_path, annotation_level="model")
    with pytest.raises(DatasetNotFoundError, match=r"missing .*families.txt"):
        load_aircraft(tmp_path, annotation_level="family")


def test_aircraft_unknown_class_name(tmp_path: Path) -> None:
    write_fake_aircraft(tmp_path)
    f = tmp_path / "fgvc-aircraft-2013b/data/images_variant_test.txt"
    f.write_text(f.read_text() + "1000001 Concorde\n")
    with pytest.raises(DatasetError, match=r"images_variant_test.txt names class 'Concorde'.*variants.txt"):
        load_aircraft(tmp_path)


def test_cars_layout(tmp_path: Path) -> None:
    write_fake_cars(tmp_path, num_classes=3, train_per_class=3, test_per_class=2)
    raw = load_cars(tmp_path)
    assert raw.class_names == ["Car Make 0 2012", "Car Make 1 2012", "Car Make 2 2012"]
    assert len(raw.train) == 9 and len(raw.test) == 6
    assert [s.label for s in raw.train] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 1-based in the .mat
    assert all("/cars_train/" in s.path for s in raw.train) and all("/cars_test/" in s.path for s in raw.test)
    # train and test reuse file names; ids must still be unique
    assert {s.image_id for s in raw.train}.isdisjoint({s.image_id for s in raw.test})


def test_dogs_layout(tmp_path: Path) -> None:
    write_fake_dogs(tmp_path, num_classes=3, train_per_class=3, test_per_class=2)
    raw = load_dogs(tmp_path)
    assert raw.class_names == ["Breed_0", "Breed_1", "Breed_2"]
    assert len(raw.train) == 9 and len(raw.test) == 6
    _check_labels_match_folders(raw.train + raw.test, lambda k: f"/Images/n0208{k:04d}-Breed_{k}/")
    # the lists may also live in lists/
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train_list.mat", "test_list.mat"):
        (tmp_path / name).rename(lists / name)
    assert len(load_dogs(tmp_path).train) == 9


def test_imagefolder_layout(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path, num_classes=3, train_per_class=3, test_per_class=2)
    (tmp_path / "train" / "class_0" / "notes.txt").write_text("not an image")
    raw = load_imagefolder(tmp_path)
    assert raw.class_names == ["class_0", "class_1", "class_2"]
    assert len(raw.train) == 9 and len(raw.test) == 6
    _check_labels_match_folders(raw.train + raw.test, lambda k: f"/class_{k}/")


@pytest.mark.parametrize(
    "data,writer,n_train,n_test,k",
    [
        ("cub", lambda p: write_fake_cub(p, 3, 5, 2), 15, 6, 3),
        ("aircraft", lambda p: write_fake_aircraft(p, (3, 2, 2)), 20, 8, 4),
        ("cars", lambda p: write_fake_cars(p, 3, 5, 2), 15, 6, 3),
        ("dogs", lambda p: write_fake_dogs(p, 3, 5, 2), 15, 6, 3),
        ("imagefolder", lambda p: write_fake_imagefolder(p, 3, 5, 2), 15, 6, 3),
    ],
)
def test_build_datasets_carves_val_from_train(tmp_path: Path, data, writer, n_train, n_test, k) -> None:
    writer(tmp_path)
    bundle = build_datasets(_cfg(data, tmp_path, val_fraction=0.2, seed=3))
    train, val, test = (set(s.path for s in d.samples) for d in (bundle.train, bundle.val, bundle.test))
    assert bundle.num_classes == k and len(bundle.class_names) == k
    assert len(train) + len(val) == n_train and len(test) == n_test
    assert not train & val and not (train | val) & test  # no validation or test image is trained on
    per_class = n_train // k
    assert Counter(bundle.val.targets) == {c: round(per_class * 0.2) for c in range(k)}
    image, label = bundle.test[0]
    assert image.shape == (3, 8, 8) and label == bundle.test.samples[0].label
    assert bundle.skipped == []


@pytest.mark.parametrize(
    "loader,needle",
    [
        (load_cub, "images.txt"),
        (load_aircraft, "variants.txt"),
        (load_cars, "cars_meta.mat"),
        (load_dogs, "Images"),
        (load_imagefolder, "train"),
    ],
)
def test_missing_dataset_names_file_and_layout(tmp_path: Path, loader, needle) -> None:
    with pytest.raises(FileNotFoundError) as info:
        loader(tmp_path / "nowhere")
    assert isinstance(info.value, DatasetError)
    msg = str(info.value)
    assert needle in msg and "laid out as" in msg and str(tmp_path / "nowhere") in msg


def test_real_dataset_needs_data_root() -> None:
    from fgmodels.config import TRAIN_DEFAULTS

    with pytest.raises(DatasetError, match="needs data_root"):
        build_datasets(dict(TRAIN_DEFAULTS, data="cub", data_root=None))
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        build_datasets(dict(TRAIN_DEFAULTS, data="imagenet", data_root="/x"))


def test_malformed_cub_line(tmp_path: Path) -> None:
    base = write_fake_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 1\n2\n")
    with pytest.raises(DatasetError, match=r"image_class_labels.txt:2: expected '<image_id> <class_id>'"):
        load_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 one\n")
    with pytest.raises(DatasetError, match=r"image_class_labels.txt:1: expected"):
        load_cub(tmp_path)


def test_corrupt_mat_file(tmp_path: Path) -> None:
    write_fake_dogs(tmp_path)
    (tmp_path / "train_list.mat").write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(DatasetError, match="train_list.mat"):
        load_dogs(tmp_path)


def test_aircraft_copyright_banner_is_cut_in_both_pipelines(tmp_path: Path) -> None:
    """FGVC-Aircraft images end in a 20-row banner that is not aircraft: the PIL
    loader and the pixel cache both see the image without it."""
    import numpy as np

    from fgmodels.data.cache import resize_square
    from fgmodels.data.dataset import ImageListDataset
    from tests.fakes import AIRCRAFT_FAKE_SIZE, BANNER_COLOUR

    write_fake_aircraft(tmp_path, per_split=(1, 1, 1))
    raw = load_aircraft(tmp_path)
    assert all(s.trim_bottom == 20 for s in raw.train + raw.test)
    image, _ = ImageListDataset(raw.train[:1], transform=None)[0]
    w, h = AIRCRAFT_FAKE_SIZE
    pixels = np.asarray(image)
    assert image.size == (w, h - 20)
    assert not (pixels == np.array(BANNER_COLOUR)).all(axis=-1).any(), "banner pixels left in the image"
    cached, (rh, rw, _, _) = resize_square(raw.train[0], 8, "shorter")
    # the shorter side of the trimmed 16 x 12 image is its height (untrimmed 16 x 32: its width)
    assert (rw, rh) == (8 * w // (h - 20), 8) and cached.max() < 250
