"""The cached uint8 pipeline: exact pixels, concurrent builders, device augmentation, engine wiring."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from fgmodels.data import Geometry, Sample, build_transforms, load_rgb
from fgmodels.data.cache import ensure_pixel_cache, open_pixel_cache
from fgmodels.data.gpu_augment import (
    DeviceLoader, augment_batch, color_jitter, crop_flip, draw_train_params,
)
from fgmodels.data.transforms import IMAGENET_MEAN, IMAGENET_STD

RESIZE, CROP = 32, 27
# Odd and even long sides, portrait and landscape, an image already at the resize size,
# so both the resize and torchvision's half-to-even centre-crop rounding are exercised.
SIZES = [(50, 37), (37, 50), (32, 45), (61, 33), (40, 40), (33, 58)]


def _make_images(folder: Path, sizes=SIZES, seed: int = 0) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = []
    for i, (w, h) in enumerate(sizes):
        # smooth gradients plus noise: resize errors would show
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], axis=2)
        pixels = np.clip(base + rng.integers(-40, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(str(path), label=i % 3))
    return samples


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Sample]:
    return _make_images(tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="module")
def cache(images, tmp_path_factory):
    return ensure_pixel_cache(images, RESIZE, "shorter", root="imgs", cache_dir=tmp_path_factory.mktemp("cache"), workers=2)


# ---------------------------------------------------------------- the cache
def test_cache_holds_exactly_the_eval_resized_pixels(images, cache) -> None:
    assert cache.images.shape == (len(images), RESIZE, RESIZE, 3) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    rows = cache.indices_of(images)
    for sample, row in zip(images, rows):
        resized = np.asarray(T.Resize(RESIZE)(load_rgb(sample.path)))  # the PIL eval pipeline's resize
        h, w = resized.shape[:2]
        top, left = int(round((h - RESIZE) / 2.0)), int(round((w - RESIZE) / 2.0))
        assert tuple(cache.geometry[row]) == (h, w, top, left)
        np.testing.assert_array_equal(cache.images[row], resized[top:top + RESIZE, left:left + RESIZE])
        assert cache.labels[row] == sample.label
    # reopening maps the same file; a second ensure reuses it (same folder, no rebuild)
    again = ensure_pixel_cache(list(reversed(images)), RESIZE, "shorter", root="imgs", cache_dir=cache.path.parent)
    assert again.path == cache.path
    assert json.loads((cache.path / "meta.json").read_text())["built_at"] == \
        json.loads((again.path / "meta.json").read_text())["built_at"]


def test_cache_key_changes_with_resize_and_file_list(images, cache) -> None:
    other = ensure_pixel_cache(images, RESIZE + 4, "shorter", root="imgs", cache_dir=cache.path.parent)
    fewer = ensure_pixel_cache(images[:-1], RESIZE, "shorter", root="imgs", cache_dir=cache.path.parent)
    square = ensure_pixel_cache(images, RESIZE, "square", root="imgs", cache_dir=cache.path.parent)
    assert len({cache.path, other.path, fewer.path, square.path}) == 4
    assert (cache.resize, square.resize) == ("shorter", "square")
    assert other.images.shape[1:3] == (RESIZE + 4, RESIZE + 4) and len(fewer) == len(images) - 1
    with pytest.raises(ValueError, match="not in the pixel cache"):
        fewer.indices_of(images)


def _builder(samples, cache_dir, barrier, results, no_lock) -> None:
    if no_lock:  # a filesystem without working locks: racing builders + atomic rename must still be safe
        import fcntl

        def broken(*_a, **_k):
            raise OSError("locks not supported")

        fcntl.flock = broken
    barrier.wait()
    c = ensure_pixel_cache(samples, RESIZE, "shorter", root="imgs", cache_dir=cache_dir, workers=1)
    results.put((str(c.path), json.loads((c.path / "meta.json").read_text())["pid"], int(np.asarray(c.images).sum())))


@pytest.mark.parametrize("no_lock", [False, True])
def test_concurrent_builders_end_with_one_valid_cache(images, cache, tmp_path, no_lock) -> None:
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_builder, args=(images, tmp_path, barrier, results, no_lock)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    paths, pids, sums = zip(*got)
    assert len(set(paths)) == 1 and len(set(sums)) == 1
    if not no_lock:
        assert len(set(pids)) == 1  # one builder, the others waited and reused its file
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert [p.name for p in folders] == [Path(paths[0]).name]  # no temp folders left behind
    built = open_pixel_cache(paths[0])
    np.testing.assert_array_equal(np.asarray(built.images), np.asarray(cache.images))


# ---------------------------------------------------------------- device augmentation
def _coordinate_images(batch: int, side: int) -> torch.Tensor:
    """Every pixel stores its own (x, y): R = x, G = y, B = 7."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img = torch.stack([xx, yy, torch.full_like(xx, 7)], dim=2).to(torch.uint8)
    return img.expand(batch, side, side, 3).contiguous()


def test_crop_flip_matches_numpy_and_varies() -> None:
    side, size, batch = 40, 24, 64
    images = _coordinate_images(batch, side)
    gen = torch.Generator().manual_seed(0)
    params = draw_train_params(batch, side - size, jitter=0.0, generator=gen)
    out = crop_flip(images, params.top, params.left, size, params.flip)
    assert out.shape == (batch, size, size, 3) and out.dtype == torch.uint8
    ref = images.numpy()
    for i in range(batch):
        t, l = int(params.top[i]), int(params.left[i])
        expect = ref[i, t:t + size, l:l + size]
        if params.flip[i]:
            expect = expect[:, ::-1]
        np.testing.assert_array_equal(out[i].numpy(), expect)
    # offsets cover the range and both flip states occur
    assert len(set(params.top.tolist())) > 8 and len(set(params.left.tolist())) > 8
    assert 0 <= int(params.top.min()) and int(params.top.max()) <= side - size
    assert 0.25 < params.flip.float().mean() < 0.75
    # the first column of a flipped crop is the crop's rightmost original column
    first_x = out[:, 0, 0, 0].long()
    assert torch.equal(first_x, torch.where(params.flip, params.left + size - 1, params.left))


def test_color_jitter_matches_torchvision_functional_ops() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 12, 12, generator=gen)
    b, c, s = (0.6 + 0.8 * torch.rand(5, generator=gen) for _ in range(3))
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for order in [(0, 1, 2), (2, 0, 1)]:
        got = color_jitter(x.clone(), b, c, s, order)
        for i in range(5):
            ref = x[i]
            for op in order:
                ref = fns[op](ref, float((b, c, s)[op][i]))
            torch.testing.assert_close(got[i], ref, atol=1e-5, rtol=0)


def test_augment_output_shape_range_and_layout() -> None:
    gen = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (6, 40, 40, 3), dtype=torch.uint8, generator=gen)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for jitter, cl in [(0.0, False), (0.4, True)]:
        params = draw_train_params(6, 40 - 32, jitter, gen)
        out = augment_batch(images, params, 32, channels_last=cl)
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
        assert out.is_contiguous(memory_format=torch.channels_last) == cl
        unit = out * std + mean  # back to [0, 1]
        assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
        if jitter == 0:  # no jitter: exactly the cropped bytes / 255
            crop = crop_flip(images, params.top, params.left, 32, params.flip).permute(0, 3, 1, 2).float() / 255
            torch.testing.assert_close(unit, crop, atol=1e-5, rtol=0)
        else:
            assert params.brightness.min() >= 0.6 and params.brightness.max() <= 1.4
            assert not torch.allclose(unit, crop, atol=1e-3)  # jitter changed the colours


def test_eval_path_equals_pil_eval_transform(images, cache) -> None:
    loader = DeviceLoader(cache, cache.indices_of(images), batch_size=4, train=False, img_size=CROP,
                          device=torch.device("cpu"))
    got = torch.cat([x for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    pil = build_transforms(Geometry("shorter", CROP, RESIZE), train=False)
    ref = torch.stack([pil(load_rgb(s.path)) for s in images])
    assert len(loader) == 2 and got.shape == ref.shape == (len(images), 3, CROP, CROP)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert labels.tolist() == [s.label for s in images]


def test_train_loader_shuffles_keeps_every_image_and_drops_only_a_lone_last_one(images, cache) -> None:
    rows = cache.indices_of(images)
    gen = torch.Generator().manual_seed(3)
    loader = DeviceLoader(cache, rows, batch_size=4, train=True, img_size=CROP, device=torch.device("cpu"),
                          color_jitter=0.0, generator=gen)
    assert len(loader) == 2  # 6 images, batch 4: a full batch and a batch of 2, every image once per epoch
    firsts = []
    for _ in range(4):
        sizes, labels = [], []
        for x, y in loader:
            assert x.shape[1:] == (3, CROP, CROP) and y.dtype == torch.int64
            sizes.append(len(y))
            labels += y.tolist()
        assert sizes == [4, 2] and sorted(labels) == sorted(s.label for s in images)
        firsts.append(tuple(labels[:4]))
    assert len(set(firsts)) > 1  # shuffled: a different first batch across epochs
    lone = DeviceLoader(cache, rows[:5], batch_size=4, train=True, img_size=CROP, device=torch.device("cpu"),
                        color_jitter=0.0, generator=gen)
    assert len(lone) == 1 and [len(y) for _, y in lone] == [4]  # a batch of 1 would break BatchNorm


# ---------------------------------------------------------------- engine wiring
def _cfg(tmp_path: Path, **over) -> dict:
    cfg = {"method": "baseline", "backbone": "test_resnet", "data": "synthetic", "data_root": str(tmp_path / "data"),
           "synthetic_classes": 4, "synthetic_per_class": 100, "synthetic_image_size": 48, "epochs": 3,
           "batch_size": 16, "opt": "adamw", "lr": 3e-3, "sched": "constant", "seed": 0, "device": "cpu",
           "amp": "off", "channels_last": True}
    cfg.update(over)
    return cfg


def test_fit_with_cache_pipeline_learns_like_pil(tmp_path, monkeypatch) -> None:
    from fgmodels.engine import Trainer, evaluate_checkpoint

    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))
    trainers = {pipe: Trainer(_cfg(tmp_path, pipeline=pipe), tmp_path / pipe, progress=False) for pipe in ("pil", "cache")}
    res = {pipe: tr.fit() for pipe, tr in trainers.items()}
    built = [p for p in (tmp_path / "cache" / "pixels").iterdir() if p.is_dir()]
    assert len(built) == 1  # one cache for train, val and test
    for pipe, r in res.items():
        losses = [h["train_loss"] for h in r.history]
        assert losses[-1] < losses[0] - 0.03, (pipe, losses)  # it learns
    # similar learning curves (measured: pil 1.425 -> 1.371, cache 1.450 -> 1.381 over 3 epochs)
    assert abs(res["cache"].history[-1]["train_loss"] - res["pil"].history[-1]["train_loss"]) < 0.1
    assert abs(res["cache"].best_val_acc - res["pil"].best_val_acc) <= 0.2
    # checkpoint evaluation goes through the cache too and reproduces val accuracy
    again = evaluate_checkpoint(res["cache"].best_dir, res["cache"].config, split="val")
    assert again["acc"] == pytest.approx(res["cache"].best_val_acc)
    # the cache's eval batches equal the PIL loader's (same resize, centre crop, normalisation)
    tr = trainers["cache"]
    x_cache, y_cache = next(iter(tr.val_loader))
    x_pil = torch.stack([tr.data.val[i][0] for i in range(len(y_cache))])
    assert x_cache.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x_cache, x_pil, atol=1e-5, rtol=0)
    assert y_cache.tolist() == [s.label for s in tr.data.val.samples[: len(y_cache)]]


def test_compile_option_wraps_what_methods_call_and_keeps_keys(monkeypatch) -> None:
    from fgmodels import engine
    from fgmodels.registry import create_method

    wrapped = []

    def fake_compile(fn):  # the real torch.compile is lazy too; this records what would be compiled
        def run(*a, **k):
            return fn(*a, **k)

        run.compiled_from = fn
        wrapped.append(fn)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    plain = create_method("gholm", 4, backbone="test_convnext")
    compiled = create_method("gholm", 4, backbone="test_convnext")
    compiled.load_state_dict(plain.state_dict())
    assert engine.compile_backbones(compiled) == 1
    assert list(plain.state_dict()) == list(compiled.state_dict())  # no "_orig_mod." prefixes
    for name in ("forward_features", "forward_head"):  # what gholm calls; a module wrapper would skip them
        original = getattr(compiled.backbone, name).compiled_from
        assert original.__self__ is compiled.backbone and original.__func__ is getattr(type(plain.backbone), name)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled.backbone(x), plain.backbone(x))  # forward goes through them
    # features_only backbones (clca) have only forward; RA-CNN keeps a list of backbones
    wrapped.clear()
    clca = create_method("clca", 4, backbone="test_resnet")
    assert engine.compile_backbones(clca) == 1 and len(wrapped) == 1
