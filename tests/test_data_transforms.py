"""Stratified split, transforms, default sizes and box mapping through the eval transform."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from fgmodels.data import (
    Geometry, Sample, box_after_eval_transform, build_transforms, default_sizes, resolve_geometry, resolve_sizes,
    stratified_split,
)
from fgmodels.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _samples(counts: dict[int, int]) -> list[Sample]:
    return [Sample(f"/d/{k}/{j}.jpg", k, image_id=f"{k}-{j}") for k, n in counts.items() for j in range(n)]


# ---------------------------------------------------------------- split

def test_split_is_stratified_and_keeps_a_train_image_per_class() -> None:
    counts = {0: 10, 1: 5, 2: 1, 3: 2, 4: 31}
    samples = _samples(counts)
    train, val = stratified_split(samples, 0.3, seed=0)
    assert sorted(s.path for s in train + val) == sorted(s.path for s in samples)
    assert not {s.path for s in train} & {s.path for s in val}
    n_val = Counter(s.label for s in val)
    for k, n in counts.items():
        assert n_val[k] == min(n - 1, round(n * 0.3)), k
    assert set(Counter(s.label for s in train)) == set(counts)  # no class left without training images
    # a large fraction would empty small classes; each keeps one training image
    train, val = stratified_split(_samples({0: 1, 1: 3}), 0.9, seed=0)
    assert Counter(s.label for s in train) == {0: 1, 1: 1} and Counter(s.label for s in val) == {1: 2}


def test_split_depends_on_seed_only() -> None:
    samples = _samples({0: 20, 1: 20, 2: 20})
    a = stratified_split(samples, 0.25, seed=1)
    b = stratified_split(list(reversed(samples)), 0.25, seed=1)  # input order does not matter
    c = stratified_split(samples, 0.25, seed=2)
    paths = lambda part: sorted(s.path for s in part)  # noqa: E731
    assert paths(a[1]) == paths(b[1]) and paths(a[0]) == paths(b[0])
    assert paths(a[1]) != paths(c[1])
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(samples, 1.0, seed=0)


# ---------------------------------------------------------------- transforms

def _unnormalise(t: torch.Tensor) -> np.ndarray:
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((t * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def test_eval_transform_matches_explicit_resize_and_centre_crop() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))  # landscape 50 x 30
    out = build_transforms(Geometry("shorter", 16, 20), train=False)(img)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    # reference: shorter side 30 -> 20, longer 50 -> int(20 * 50 / 30) = 33; crop offsets round((33-16)/2)=8, 2
    ref = np.asarray(img.resize((33, 20), Image.BILINEAR))[2:18, 8:24]
    assert np.abs(_unnormalise(out).astype(int) - ref.astype(int)).max() <= 1


def test_normalisation_uses_imagenet_statistics() -> None:
    grey = Image.new("RGB", (12, 12), (124, 116, 104))  # ~ ImageNet mean
    out = build_transforms(Geometry("square", 8, 10), train=False)(grey)
    expected = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-3)
    assert out.abs().max() < 0.02


def test_train_transform_crops_flips_and_jitters() -> None:
    arr = np.zeros((20, 20, 3), np.uint8)
    arr[:, :10] = (200, 40, 40)  # left half red, right half blue: a flip is visible
    arr[:, 10:] = (40, 40, 200)
    img = Image.fromarray(arr)
    tf = build_transforms(Geometry("square", 16, 20), train=True, color_jitter=0.4)
    outs = []
    for seed in range(12):
        torch.manual_seed(seed)
        outs.append(tf(img))
    assert all(o.shape == (3, 16, 16) for o in outs)
    left_red = [bool(o[0, :, 0].mean() > o[2, :, 0].mean()) for o in outs]
    assert any(left_red) and not all(left_red)  # flipped sometimes, not always
    means = torch.stack([o.mean() for o in outs])
    assert means.std() > 0.01  # colour jitter changes brightness between draws
    still = build_transforms(Geometry("square", 16, 20), train=True, color_jitter=0.0)
    torch.manual_seed(0)
    plain = still(img)
    assert plain.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="img_size <= resize_size"):
        Geometry("square", 32, 20)
    with pytest.raises(ValueError, match="resize must be one of"):
        Geometry("oval", 16, 20)
    with pytest.raises(ValueError, match="no crop"):
        Geometry("direct", 16, 20)


def test_default_and_resolved_sizes() -> None:
    assert default_sizes("cub") == (448, 510)
    assert default_sizes("synthetic") == (64, 72)
    with pytest.raises(ValueError, match="unknown dataset"):
        default_sizes("mnist")
    assert resolve_sizes({"data": "cars", "img_size": None, "resize_size": None}) == (448, 510)
    assert resolve_sizes({"data": "synthetic", "synthetic_image_size": 160}) == (128, 144)
    assert resolve_sizes({"data": "cub", "img_size": 224, "resize_size": None}) == (224, 255)
    assert resolve_sizes({"data": "cub", "img_size": 100, "resize_size": 120}) == (100, 120)
    # direct: no crop, the resize is the input size; a size given alone keeps the dataset's ratio
    assert resolve_geometry({"data": "dogs", "img_size": 224}) == Geometry("direct", 224, 224)
    assert resolve_geometry({"data": "dogs", "resize": "square"}) == Geometry("square", 448, 510)
    assert resolve_geometry({"data": "cub", "resize": "direct", "resize_size": 255}) == Geometry("direct", 224, 224)
    assert resolve_geometry({"data": "cub", "resize": "auto"}) == Geometry("square", 448, 510)


# ---------------------------------------------------------------- box mapping

@pytest.mark.parametrize("mode", ["square", "shorter", "direct"])
@pytest.mark.parametrize(
    "wh,box",
    [((80, 80), (30, 20, 12, 12)), ((120, 70), (50, 10, 30, 40)), ((60, 100), (5, 60, 20, 25)),
     ((100, 60), (20, 0, 15, 10))],
)
def test_box_after_eval_transform_matches_painted_box(wh, box, mode) -> None:
    """Paint the box white on black, push it through the real eval transform, measure it."""
    arr = np.zeros((wh[1], wh[0], 3), np.uint8)
    x, y, w, h = box
    arr[y : y + h, x : x + w] = 255
    img_size, resize = 48, 48 if mode == "direct" else 56
    out = _unnormalise(build_transforms(Geometry(mode, img_size, resize), train=False)(Image.fromarray(arr)))
    ys, xs = np.nonzero(out[..., 0] > 127)
    measured = (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
    mapped = box_after_eval_transform(box, wh, img_size, resize, resize=mode)
    assert np.allclose(mapped, measured, atol=1.0), (mapped, measured)
    assert 0 <= mapped[0] and mapped[0] + mapped[2] <= img_size


def test_box_outside_crop_is_clipped() -> None:
    # 200x100 -> 112x56, crop offset left = 32: the left strip (x < 16 before resizing) is cut away
    x, y, w, h = box_after_eval_transform((0, 10, 10, 10), (200, 100), 48, 56, resize="shorter")
    assert x == 0.0 and w == 0.0 and h == pytest.approx(5.6)
