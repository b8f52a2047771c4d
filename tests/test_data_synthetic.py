"""The synthetic fine-grained set: layout, determinism, caching, and that it is fine-grained."""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from fgmodels.data import DatasetError, build_datasets, ensure_synthetic, load_cub
from fgmodels.data import synthetic as synth

SIZE = 80


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("synth"))  # defaults: 10 classes x 60 images, 80 px


@pytest.fixture(scope="module")
def raw(default_set: Path):
    return load_cub(default_set)


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
        return np.asarray(im, dtype=np.float64)


def test_layout_read_by_load_cub(default_set: Path, raw) -> None:
    for name in ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt",
                 "bounding_boxes.txt", "parts/part_locs.txt", "part_boxes.txt"):
        assert (default_set / name).is_file(), name
    assert len(raw.class_names) == 10 and len(set(raw.class_names)) == 10
    assert len(raw.train) == 300 and len(raw.test) == 300
    assert Counter(s.label for s in raw.train) == {k: 30 for k in range(10)}
    assert Counter(s.label for s in raw.test) == {k: 30 for k in range(10)}
    labels_file = dict(line.split() for line in (default_set / "image_class_labels.txt").read_text().splitlines())
    assert set(labels_file.values()) == {str(k) for k in range(1, 11)}  # 1-based on disk
    for s in raw.train + raw.test:
        assert int(labels_file[s.image_id]) == s.label + 1
        assert f"/{s.label + 1:03d}.{raw.class_names[s.label]}/" in s.path
        assert s.bbox is not None and s.part_box is not None
        assert [p[0] for p in s.parts] == [1, 2, 3]
        # keypoint 3 is the centre of the part box
        x, y, w, h = s.part_box
        assert s.parts[2][1:] == pytest.approx((x + w / 2, y + h / 2), abs=0.06)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    small = dict(num_classes=3, per_class=4, image_size=SIZE)
    a = ensure_synthetic(tmp_path / "a", seed=5, **small)
    b = ensure_synthetic(tmp_path / "b", seed=5, **small)
    c = ensure_synthetic(tmp_path / "c", seed=6, **small)
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
                 "part_boxes.txt", "parts/part_locs.txt", "classes.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "bounding_boxes.txt").read_bytes() != (c / "bounding_boxes.txt").read_bytes()
    ra, rb, rc = load_cub(a), load_cub(b), load_cub(c)
    for sa, sb, sc in zip(ra.train + ra.test, rb.train + rb.test, rc.train + rc.test):
        assert np.array_equal(_pixels(sa.path), _pixels(sb.path))
        assert not np.array_equal(_pixels(sa.path), _pixels(sc.path))


def test_cache_is_reused_and_keyed_by_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "env_cache"))
    first = ensure_synthetic(num_classes=2, per_class=2)
    assert first.parent == tmp_path / "env_cache" / "synthetic"

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(synth, "write_synthetic", boom)
    assert ensure_synthetic(num_classes=2, per_class=2) == first
    with pytest.raises(AssertionError, match="regenerated"):
        ensure_synthetic(num_classes=2, per_class=3)  # other params -> other folder


def _race(cache: str, queue) -> None:
    import time

    original = synth.write_synthetic

    def slow(*args, **kwargs):  # make sure every process is generating at the same time
        time.sleep(0.5)
        original(*args, **kwargs)

    synth.write_synthetic = slow
    queue.put(str(ensure_synthetic(cache, num_classes=2, per_class=3)))


def test_concurrent_first_use_is_safe(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    assert os.listdir(tmp_path) == [Path(paths.pop()).name]  # no temp folders left behind
    raw = load_cub(tmp_path / os.listdir(tmp_path)[0])
    assert len(raw.train) + len(raw.test) == 6


def test_stale_temp_folders_are_cleaned(tmp_path: Path) -> None:
    key = synth.synthetic_key(2, 2, SIZE, 0)
    stale, fresh = tmp_path / f".{key}.tmp-dead", tmp_path / f".{key}.tmp-live"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (0, 0))  # left by a process killed long ago
    ensure_synthetic(tmp_path, num_classes=2, per_class=2)
    assert not stale.exists() and fresh.exists()  # a running generator's folder is left alone


def test_bad_params_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="synthetic_classes must be in 2..35"):
        ensure_synthetic(tmp_path, num_classes=36)
    with pytest.raises(DatasetError, match="synthetic_per_class"):
        ensure_synthetic(tmp_path, per_class=1)


def test_part_is_small_and_inside_object(raw) -> None:
    fractions = []
    for s in raw.train + raw.test:
        bx, by, bw, bh = s.bbox
        px, py, pw, ph = s.part_box
        fractions.append(pw * ph / SIZE**2)
        assert 0 <= bx and 0 <= by and bx + bw <= SIZE and by + bh <= SIZE
        assert bx <= px and by <= py and px + pw <= bx + bw and py + ph <= by + bh
        # the part stays clear of the border that a 64-of-72 crop can cut off
        assert min(px, py, SIZE - px - pw, SIZE - py - ph) >= 0.1 * SIZE
    fractions = np.array(fractions)
    assert fractions.max() < 0.10
    assert 0.015 < fractions.mean() < 0.04, fractions.mean()


def test_part_pixels_carry_the_class_colour(raw) -> None:
    """Independent of the generator's bookkeeping: the annotated box really holds the class colour."""
    for s in raw.train[::7]:
        colour = np.array(synth.COLOURS[raw.class_names[s.label].split("_")[0]], dtype=np.float64)
        x, y, w, h = (int(v) for v in s.part_box)
        crop = _pixels(s.path)[y : y + h, x : x + w]
        close = np.linalg.norm(crop - colour, axis=-1) < 50
        assert close.mean() > 0.3, (s.path, close.mean())


def test_object_distribution_does_not_depend_on_class(raw, default_set: Path) -> None:
    """One-way ANOVA across classes: object box, scale, pose, part size and background colour
    show no class effect."""
    samples = raw.train + raw.test
    feats = {
        "centre_x": [s.bbox[0] + s.bbox[2] / 2 for s in samples],
        "centre_y": [s.bbox[1] + s.bbox[3] / 2 for s in samples],
        "width": [s.bbox[2] for s in samples],
        "height": [s.bbox[3] for s in samples],
        "part_side": [s.part_box[2] for s in samples],
        # keypoints 1 (head) and 2 (body): object scale and pose angle
        "head_body_distance": [np.hypot(s.parts[0][1] - s.parts[1][1], s.parts[0][2] - s.parts[1][2]) for s in samples],
        "pose_cos": [np.cos(np.arctan2(s.parts[0][2] - s.parts[1][2], s.parts[0][1] - s.parts[1][1])) for s in samples],
        "pose_sin": [np.sin(np.arctan2(s.parts[0][2] - s.parts[1][2], s.parts[0][1] - s.parts[1][1])) for s in samples],
    }
    background = []
    for s in samples:
        img = _pixels(s.path)
        mask = np.ones((SIZE, SIZE), bool)
        x, y, w, h = (int(v) for v in s.bbox)
        mask[y : y + h, x : x + w] = False
        background.append(img[mask].mean())
    feats["background"] = background
    labels = np.array([s.label for s in samples])
    for name, values in feats.items():
        values = np.array(values)
        p = stats.f_oneway(*(values[labels == k] for k in range(10))).pvalue
        assert p > 0.001, (name, p)


def _ridge_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, lam: float = 10.0) -> float:
    """Ridge regression onto one-hot labels, solved in closed form."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = np.c_[(xtr - mu) / sd, np.ones(len(xtr))]
    b = np.c_[(xte - mu) / sd, np.ones(len(xte))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ np.eye(10)[ytr])
    return float(((b @ w).argmax(1) == yte).mean())


def test_genuinely_fine_grained(raw) -> None:
    """The class lives in the part: a linear classifier on the part crop is near perfect,
    the same classifier on the whole image shrunk to 12 px (part illegible) is near chance."""

    def features(samples, part: bool) -> np.ndarray:
        out = []
        for s in samples:
            with Image.open(s.path) as im:
                if part:
                    x, y, w, h = s.part_box
                    im = im.crop((x, y, x + w, y + h))
                out.append(np.asarray(im.resize((12, 12), Image.BILINEAR), np.float64).ravel() / 255)
        return np.array(out)

    ytr = np.array([s.label for s in raw.train])
    yte = np.array([s.label for s in raw.test])
    part = _ridge_accuracy(features(raw.train, True), ytr, features(raw.test, True), yte)
    whole = _ridge_accuracy(features(raw.train, False), ytr, features(raw.test, False), yte)
    assert part >= 0.9, part
    assert whole <= 0.25, whole  # chance is 0.1
    assert part - whole >= 0.6


def test_build_datasets_uses_data_root_as_cache(tmp_path: Path) -> None:
    from fgmodels.config import TRAIN_DEFAULTS

    cfg = dict(TRAIN_DEFAULTS, data="synthetic", data_root=str(tmp_path), synthetic_classes=3, synthetic_per_class=10)
    bundle = build_datasets(cfg)
    assert bundle.root is not None and bundle.root.parent == tmp_path
    assert bundle.num_classes == 3 and len(bundle.test) == 15
    assert len(bundle.train) + len(bundle.val) == 15 and len(bundle.val) == 3
    image, label = bundle.train[0]
    assert image.shape == (3, 64, 64)  # default 64 px crops of 72 px resizes
