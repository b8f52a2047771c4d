"""Batched augmentation on the training device, fed from the shared pixel cache.

``pipeline: cache`` replaces the per-image PIL pipeline (decode, resize, crop,
flip, jitter, normalise in DataLoader workers) with:

1. a background thread that gathers the batch's uint8 rows from the memory-mapped
   :class:`~fgmodels.data.cache.PixelCache` (``np.take`` releases the GIL), and on
   CUDA copies them into pinned memory and to the GPU on a side stream;
2. on the device, one gather for random crop + horizontal flip of the whole
   batch (still uint8: 4x less traffic than float), then float conversion,
   colour jitter (brightness, contrast, saturation with per-image factors, in a
   random order per batch) and ImageNet normalisation.

Nothing is resized here: the cache holds the pixels after the config's resize
(``square``, ``shorter`` or ``direct``). Evaluation takes the centre crop at
torchvision's exact offsets (none under ``direct``, where the stored side is
``img_size``), so eval batches equal the PIL eval transform up to float
rounding; training crops are drawn in ``0..S - img_size`` (only flips under
``direct``). Random draws come from the loader's CPU generator (tiny per-batch
arrays), so a run is repeatable and the same on CPU and GPU. Nothing in a batch synchronises the host with the
device. The output is channels-last when asked (the gather already yields that
layout) and float32; autocast casts it where the model wants bf16.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from fgmodels.data.cache import PixelCache, ensure_pixel_cache
from fgmodels.data.transforms import IMAGENET_MEAN, IMAGENET_STD

_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


# ---------------------------------------------------------------- device ops
def crop_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int,
              flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image ``size x size`` crop at (top, left), mirrored where ``flip``; NHWC in, NHWC out.

    One advanced-indexing gather for the whole batch (any dtype, any device).
    """
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"crop_flip expects NHWC images [B, H, W, 3], got shape {tuple(images.shape)}")
    b, h, w, _ = images.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} is larger than the images ({h}x{w})")
    dev = images.device
    ar = torch.arange(size, device=dev)
    rows = top.to(dev).view(b, 1) + ar.view(1, size)  # [B, size]
    cols = ar.view(1, size).expand(b, size)
    if flip is not None:
        cols = torch.where(flip.to(dev).view(b, 1), size - 1 - cols, cols)
    cols = left.to(dev).view(b, 1) + cols
    bidx = torch.arange(b, device=dev).view(b, 1, 1)
    return images[bidx, rows.view(b, size, 1), cols.view(b, 1, size)]


def to_float01(nhwc_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]; the result is channels-last in memory."""
    return nhwc_u8.permute(0, 3, 1, 2).float().div_(255.0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 order: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """torchvision's tensor ColorJitter maths with per-image factors [B], for x in [0, 1] NCHW.

    0 brightness: ``x * f``; 1 contrast: blend with the image's mean grey level;
    2 saturation: blend with the grey image; each clamped to [0, 1].
    """
    b = x.shape[0]
    factors = {0: brightness, 1: contrast, 2: saturation}
    for op in order:
        f = factors[op].to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1)
        if op == 0:
            x = (x * f).clamp_(0.0, 1.0)
        elif op == 1:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = (f * x + (1 - f) * mean).clamp_(0.0, 1.0)
        else:
            x = (f * x + (1 - f) * _grey(x)).clamp_(0.0, 1.0)
    return x


_NORM_CONSTANTS: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(x: torch.Tensor) -> torch.Tensor:
    """In-place ImageNet normalisation; the constants are copied to each device once."""
    key = (str(x.device), x.dtype)
    if key not in _NORM_CONSTANTS:  # one small host->device copy per device, ever
        _NORM_CONSTANTS[key] = tuple(
            torch.tensor(v, dtype=x.dtype).view(1, 3, 1, 1).to(x.device) for v in (IMAGENET_MEAN, IMAGENET_STD)
        )
    mean, std = _NORM_CONSTANTS[key]
    return x.sub_(mean).div_(std)


@dataclass
class AugmentParams:
    """Host-drawn random parameters of one batch (tiny arrays)."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor | None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    order: tuple[int, ...] = (0, 1, 2)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.top, self.left, self.flip, self.brightness, self.contrast, self.saturation)
                if t is not None]

    def to(self, device: torch.device, pin: bool = False) -> "AugmentParams":
        """Copy to ``device``; with ``pin`` through pinned memory so the copy is asynchronous."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

        return AugmentParams(move(self.top), move(self.left), move(self.flip), move(self.brightness),
                             move(self.contrast), move(self.saturation), self.order)


def draw_train_params(batch: int, span: int, jitter: float, generator: torch.Generator | None) -> AugmentParams:
    """Random crop offsets in ``0..span``, flip with p=0.5, jitter factors ~ U[max(0, 1-j), 1+j]."""
    top = torch.randint(0, span + 1, (batch,), generator=generator)
    left = torch.randint(0, span + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    params = AugmentParams(top, left, flip)
    if jitter > 0:
        lo, hi = max(0.0, 1.0 - jitter), 1.0 + jitter
        params.brightness, params.contrast, params.saturation = (
            lo + (hi - lo) * torch.rand(batch, generator=generator) for _ in range(3)
        )
        params.order = tuple(torch.randperm(3, generator=generator).tolist())
    return params


def augment_batch(images_u8: torch.Tensor, params: AugmentParams, size: int, channels_last: bool = False) -> torch.Tensor:
    """Crop/flip/jitter/normalise a uint8 NHWC batch already on its device -> float32 NCHW."""
    x = to_float01(crop_flip(images_u8, params.top, params.left, size, params.flip))
    if params.brightness is not None:
        x = color_jitter(x, params.brightness, params.contrast, params.saturation, params.order)
    x = normalize(x)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# ---------------------------------------------------------------- the loader
class DeviceLoader:
    """Iterable of ``(images, labels)`` already on ``device``, like a DataLoader over the cache.

    ``train=True``: shuffled with ``generator`` each iteration, incomplete last
    batch dropped when there is more than one batch, random augmentation.
    ``train=False``: in order, centre crop, every image once.
    """

    def __init__(self, cache: PixelCache, rows: np.ndarray, batch_size: int, train: bool, img_size: int,
                 device: torch.device, color_jitter: float = 0.4, channels_last: bool = False,
                 generator: torch.Generator | None = None, prefetch: int = 2) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 < img_size <= cache.resize_size:
            raise ValueError(f"img_size {img_size} must be in 1..{cache.resize_size} (the cache's resize size)")
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)
        self.batch_size, self.train, self.img_size = int(batch_size), bool(train), int(img_size)
        self.device, self.jitter, self.channels_last = torch.device(device), float(color_jitter), bool(channels_last)
        self.generator, self.prefetch = generator, max(1, int(prefetch))
        self.drop_last = self.train and len(self.rows) % self.batch_size == 1  # only a lone last image (BatchNorm)
        self._eval_offsets = None if train else cache.eval_offsets(self.rows, self.img_size)
        self._labels = torch.from_numpy(np.asarray(cache.labels, dtype=np.int64))

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        n = len(self.rows)
        order = torch.randperm(n, generator=self.generator).numpy() if self.train else np.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def _host_batch(self, pos: np.ndarray) -> tuple[np.ndarray, torch.Tensor, AugmentParams]:
        if self.train:
            pos = np.sort(pos)  # rows in file order: sequential reads; order inside a batch is irrelevant
            params = draw_train_params(len(pos), self.cache.resize_size - self.img_size, self.jitter, self.generator)
        else:
            off = torch.from_numpy(self._eval_offsets[pos])
            params = AugmentParams(off[:, 0], off[:, 1], None)
        rows = self.rows[pos]
        return rows, self._labels[rows], params

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        pinned: torch.Tensor | None = None
        try:
            for pos in self._batches():
                if stop.is_set():
                    return
                rows, labels, params = self._host_batch(pos)
                shape = (len(rows), *self.cache.images.shape[1:])
                if cuda:
                    if pinned is None or pinned.shape[0] < shape[0]:
                        pinned = torch.empty((self.batch_size, *shape[1:]), dtype=torch.uint8, pin_memory=True)
                    # mode="clip" (rows are valid): numpy then writes straight into ``out``, no temp copy
                    np.take(self.cache.images, rows, axis=0, out=pinned[: shape[0]].numpy(), mode="clip")
                    with torch.cuda.stream(stream):
                        images = pinned[: shape[0]].to(self.device, non_blocking=True)
                        labels = labels.pin_memory().to(self.device, non_blocking=True)
                        params = params.to(self.device, pin=True)
                    stream.synchronize()  # blocks this thread only; the pinned buffer is free again
                else:
                    images = torch.from_numpy(np.take(self.cache.images, rows, axis=0))
                out.put((images, labels, params))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            out.put(err)
            return
        out.put(None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        out: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), daemon=True, name="pixel-cache-prefetch")
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                images, labels, params = item
                if images.is_cuda:  # made on the side stream, used on this one
                    main = torch.cuda.current_stream(images.device)
                    for t in (images, labels, *params.tensors()):
                        t.record_stream(main)
                yield augment_batch(images, params, self.img_size, self.channels_last), labels
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    out.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()


# ---------------------------------------------------------------- engine glue
def attach_pixel_cache(bundle: Any, cfg: dict[str, Any]) -> PixelCache:
    """Build/open ONE cache over all splits of a :class:`~fgmodels.data.DataBundle`
    (so its key does not depend on the seed's val split) and attach it to each split."""
    from fgmodels.data.dataset import resolve_geometry

    geometry = resolve_geometry(cfg)
    splits = [bundle.train, bundle.val, bundle.test]
    cache = ensure_pixel_cache([s for d in splits for s in d.samples], geometry.resize_size, geometry.resize,
                               root=bundle.root)
    for d in splits:
        d.pixel_cache = cache
    return cache


def make_device_loader(dataset: Any, batch_size: int, train: bool, cfg: dict[str, Any], device: torch.device,
                       generator: torch.Generator | None = None) -> DeviceLoader:
    """The ``pipeline: cache`` counterpart of ``engine.make_loader`` for one split."""
    from fgmodels.data.dataset import resolve_geometry

    geometry = resolve_geometry(cfg)
    cache = getattr(dataset, "pixel_cache", None)
    if cache is None:  # a lone split (not from attach_pixel_cache): a cache of its own images
        cache = ensure_pixel_cache(dataset.samples, geometry.resize_size, geometry.resize)
        dataset.pixel_cache = cache
    if (cache.resize, cache.resize_size) != (geometry.resize, geometry.resize_size):
        raise ValueError(f"the pixel cache {cache.path} holds resize {cache.resize!r} at {cache.resize_size} px, "
                         f"the config asks for {geometry.resize!r} at {geometry.resize_size} px. "
                         "Fix: attach the cache built for this config (attach_pixel_cache)")
    return DeviceLoader(
        cache, cache.indices_of(dataset.samples), batch_size, train, geometry.img_size, device,
        color_jitter=float(cfg.get("color_jitter", 0.4)), channels_last=bool(cfg.get("channels_last", False)),
        generator=generator,
    )


__all__ = [
    "AugmentParams", "DeviceLoader", "attach_pixel_cache", "augment_batch", "color_jitter", "crop_flip",
    "draw_train_params", "make_device_loader", "normalize", "to_float01",
]
