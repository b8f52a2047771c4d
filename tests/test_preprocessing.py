"""The resize modes (square / shorter / direct): both pipelines see the same pixels, a
square resize keeps the image's edges, each dataset gets its paper's default, bad values fail."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgmodels.config import TRAIN_DEFAULTS, ConfigError, check_values
from fgmodels.data import RESIZE_MODES, Geometry, Sample, build_datasets, build_transforms, resolve_geometry
from fgmodels.data.cache import ensure_pixel_cache
from fgmodels.data.gpu_augment import DeviceLoader, attach_pixel_cache, make_device_loader
from fgmodels.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.fakes import write_fake_cub, write_fake_dogs

IMG, RESIZE = 24, 28
# (w, h): 3:2, 2:3, 3:1, 1:1, about 4:3, about 1:2; odd and even sides for the crop rounding
SIZES = [(60, 40), (40, 60), (90, 30), (45, 45), (70, 52), (33, 61)]
CPU = torch.device("cpu")
# The cache and PIL eval tensors are compared for exact equality: on the CPU both
# run the same elementwise float32 ops in the same order (uint8 -> float, / 255,
# - mean, / std), so they agree bit for bit (measured: max diff 0.0). TOL is for
# comparisons with the independent computations written in this file (numpy
# division, our own normalisation): far below one pixel level, 1/255/0.225 = 0.017.
TOL = 1e-5


def _noise(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Gradients plus noise: a shifted crop or a different resize shows up at once."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (3 * xx + yy) % 256], axis=2)
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def _write_imagefolder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k in range(2):
            for j, (w, h) in enumerate(SIZES):
                path = root / split / f"class_{k}" / f"img_{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                _noise(w, h, rng).save(path)
    return root


def _write_cub(root: Path) -> Path:
    """The fake CUB layout with its plain images replaced by noise of several aspect ratios."""
    base = write_fake_cub(root, num_classes=2, train_per_class=3, test_per_class=3)
    rng = np.random.default_rng(1)
    for i, path in enumerate(sorted((base / "images").rglob("*.jpg"))):
        _noise(*SIZES[i % len(SIZES)], rng).save(path, quality=95)
    return root


def _cfg(data: str, root: Path, **over) -> dict:
    return dict(TRAIN_DEFAULTS, data=data, data_root=str(root), img_size=IMG, resize_size=RESIZE, color_jitter=0.0,
                **over)


def _unnormalise(x: torch.Tensor) -> np.ndarray:
    """Normalised (3, H, W) -> uint8-range (H, W, 3) floats."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x * std + mean) * 255).permute(1, 2, 0).numpy()


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> normalised (3, H, W), written out here rather than taken from torchvision."""
    x = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


# ---------------------------------------------------------------- (a) both pipelines, same eval tensors
@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("data, writer", [("imagefolder", _write_imagefolder), ("cub", _write_cub)])
def test_cache_and_pil_pipelines_give_the_same_eval_tensors(tmp_path, monkeypatch, data, writer, mode) -> None:
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))
    cfg = _cfg(data, writer(tmp_path / "data"), resize=mode)
    bundle = build_datasets(cfg)
    cache = attach_pixel_cache(bundle, cfg)
    side = IMG if mode == "direct" else RESIZE
    assert (cache.resize, cache.images.shape[1:]) == (mode, (side, side, 3))
    samples = bundle.val.samples + bundle.test.samples
    for split in (bundle.val, bundle.test):  # the evaluated splits
        loader = make_device_loader(split, 4, train=False, cfg=cfg, device=CPU)
        got = torch.cat([x for x, _ in loader])
        ref = torch.stack([split[i][0] for i in range(len(split))])
        assert got.shape == ref.shape == (len(split), 3, IMG, IMG)
        assert torch.equal(got, ref), (got - ref).abs().max().item()
    assert len({round(w / h, 2) for w, h in (Image.open(s.path).size for s in samples)}) >= 4  # several ratios
    if mode != "shorter":  # the cache holds the whole image at the square, nothing cut (PIL's own resize)
        for sample, row in zip(samples, cache.indices_of(samples)):
            whole = np.asarray(Image.open(sample.path).convert("RGB").resize((side, side), Image.BILINEAR))
            np.testing.assert_array_equal(cache.images[row], whole)


# ---------------------------------------------------------------- (b) the edges of a wide image
def _wide_image(folder: Path) -> Sample:
    """96 x 32 (3:1): left sixth red, right sixth blue, green between."""
    arr = np.zeros((32, 96, 3), np.uint8)
    arr[:, :16], arr[:, 16:80], arr[:, 80:] = (230, 20, 20), (20, 200, 20), (20, 20, 230)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / "wide.png")
    return Sample(str(folder / "wide.png"), 0)


def _dominant(column: np.ndarray) -> str:
    r, g, b = column.reshape(-1, 3).mean(axis=0)
    return "red" if r > 150 > max(g, b) else "blue" if b > 150 > max(r, g) else "green" if g > 150 > max(r, b) else "?"


@pytest.mark.parametrize("pipeline", ["pil", "cache"])
@pytest.mark.parametrize("mode, edges", [("square", ("red", "blue")), ("direct", ("red", "blue")),
                                         ("shorter", ("green", "green"))])
def test_square_and_direct_keep_a_wide_images_edges_shorter_cuts_them(tmp_path, pipeline, mode, edges) -> None:
    sample = _wide_image(tmp_path / "img")
    geometry = Geometry(mode, IMG, IMG if mode == "direct" else RESIZE)
    if pipeline == "pil":
        out = build_transforms(geometry, train=False)(Image.open(sample.path).convert("RGB"))
    else:
        cache = ensure_pixel_cache([sample], geometry.resize_size, mode, cache_dir=tmp_path / "cache", workers=1)
        (out,), _ = next(iter(DeviceLoader(cache, np.array([0]), 1, False, IMG, CPU)))
    pixels = _unnormalise(out)
    assert (_dominant(pixels[:, 0]), _dominant(pixels[:, -1])) == edges
    assert _dominant(pixels[:, IMG // 2]) == "green"


# ---------------------------------------------------------------- (c) dataset defaults
@pytest.mark.parametrize("data, expected", [
    ("dogs", Geometry("direct", 448, 448)), ("cub", Geometry("square", 448, 510)),
    ("cars", Geometry("square", 448, 510)), ("aircraft", Geometry("square", 448, 510)),
    ("imagefolder", Geometry("square", 448, 510)), ("synthetic", Geometry("square", 64, 72)),
])
def test_dataset_defaults_follow_the_papers(data, expected) -> None:
    assert resolve_geometry({"data": data}) == expected
    assert resolve_geometry({"data": data, "resize": "auto"}) == expected


def test_dogs_default_is_a_direct_448_resize_without_crop(tmp_path, monkeypatch) -> None:
    """Stanford Dogs: the whole image at 448 x 448 for evaluation; training only flips it (both pipelines)."""
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))
    root = write_fake_dogs(tmp_path / "dogs", num_classes=2, train_per_class=3, test_per_class=1)
    rng = np.random.default_rng(2)
    for photo in sorted((Path(root) / "Images").rglob("*.jpg")):
        _noise(60, 40, rng).save(photo, quality=95)
    cfg = dict(TRAIN_DEFAULTS, data="dogs", data_root=str(root), color_jitter=0.0)  # no size given
    bundle = build_datasets(cfg)

    def whole(sample: Sample) -> torch.Tensor:  # PIL's own resize of the full image, normalised here
        return _normalise(np.asarray(Image.open(sample.path).convert("RGB").resize((448, 448), Image.BILINEAR)))

    for i, sample in enumerate(bundle.test.samples):
        x, _ = bundle.test[i]
        assert x.shape == (3, 448, 448) and (x - whole(sample)).abs().max().item() <= TOL
    # training: the whole image, sometimes mirrored, never cropped
    allowed = [v for s in bundle.train.samples for v in (whole(s), whole(s).flip(-1))]
    torch.manual_seed(0)
    pil = [bundle.train[i][0] for i in range(len(bundle.train))] * 2
    attach_pixel_cache(bundle, cfg)
    loader = make_device_loader(bundle.train, 2, train=True, cfg=cfg, device=CPU,
                                generator=torch.Generator().manual_seed(0))
    cached = [x for batch, _ in loader for x in batch]
    assert len(cached) == len(bundle.train) - len(bundle.train) % 2
    for x in pil + cached:
        assert min((x - v).abs().max().item() for v in allowed) <= TOL


def test_square_and_shorter_give_the_same_pixels_for_square_images() -> None:
    """Why the synthetic demo (80 x 80 images) is unchanged by its square default."""
    image = _noise(80, 80, np.random.default_rng(3))
    square = build_transforms(Geometry("square", 64, 72), train=False)(image)
    shorter = build_transforms(Geometry("shorter", 64, 72), train=False)(image)
    assert torch.equal(square, shorter)


# ---------------------------------------------------------------- (d) a bad value
def test_a_bad_resize_value_is_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError) as err:
        check_values("baseline", {"resize": "oval"})
    message = str(err.value)
    assert err.value.key == "resize" and "'oval'" in message and "Fix: " in message
    assert all(mode in message for mode in RESIZE_MODES)
    for good in (None, "auto", *RESIZE_MODES):
        assert check_values("baseline", {"resize": good}) == {"resize": good}
