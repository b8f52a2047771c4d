"""Decode and resize every image ONCE into a uint8 array that all trials on a node share.

A hyperparameter search runs dozens of trials over the same images; decoding
JPEGs and resizing them on the CPU for every epoch of every trial is what
starves the GPU. :func:`ensure_pixel_cache` writes, per (dataset root, file
list, resize mode, resize size), one ``images.npy`` of shape ``N x S x S x 3``
(uint8, ``S = resize_size``; under ``direct`` that is ``img_size``) plus the labels. Trials open it with ``np.load(...,
mmap_mode="r")``: the pixels live once in the OS page cache, whatever the
number of trials, and a batch is a ``np.take`` of rows.

What is stored: the image resized exactly as the PIL pipeline does (the same
torchvision ``resize`` call, bilinear with antialias). Under ``square`` and
``direct`` that is the whole image at ``S x S``, nothing cut, so the eval centre
crop and the training random crops see exactly the PIL pipeline's pixels. Under
``shorter`` (shorter side -> ``S``) the central ``S x S`` square is kept; per
image the full resized size and the square's offset are stored (``geometry``),
so the eval centre crop of any ``img_size`` reproduces torchvision's
``CenterCrop`` offsets exactly, while training random crops stay inside the
square (the PIL pipeline may also crop along the longer side's ends).

Concurrency: the first process takes an ``fcntl`` lock, builds into a temporary
folder and renames it into place; processes that arrive meanwhile block on the
lock and then open the finished cache. A crash mid-build leaves only a temp
folder, never a half cache.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fgmodels.data.cachedir import default_cache_dir
from fgmodels.data.imageio import load_sample
from fgmodels.data.transforms import RESIZE_MODES, Geometry
from fgmodels.data.types import DatasetError, Sample

CACHE_VERSION = 2  # bump when the stored pixels or files change
_FILES = ("images.npy", "labels.npy", "geometry.npy", "paths.json", "meta.json")


@dataclass
class PixelCache:
    """An opened cache: ``images`` is a read-only memmap ``[N, S, S, 3]`` uint8.

    ``geometry[i] = (resized_h, resized_w, top, left)``: the image after
    the resize and where the stored square sits in it; ``resize`` is the mode
    (:data:`~fgmodels.data.transforms.RESIZE_MODES`) the pixels were made with.
    """

    path: Path
    images: np.ndarray
    labels: np.ndarray
    geometry: np.ndarray
    paths: list[str]
    resize_size: int
    resize: str

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def nbytes(self) -> int:
        return int(self.images.size)

    def indices_of(self, samples: Sequence[Sample]) -> np.ndarray:
        """Row of each sample (by path); a sample not in the cache is an error."""
        row = {p: i for i, p in enumerate(self.paths)}
        missing = [s.path for s in samples if s.path not in row]
        if missing:
            raise DatasetError(
                f"{len(missing)} images are not in the pixel cache {self.path} (first: {missing[0]}); "
                "the cache was built for another file list; delete that folder to rebuild it"
            )
        return np.fromiter((row[s.path] for s in samples), dtype=np.int64, count=len(samples))

    def eval_offsets(self, rows: np.ndarray, img_size: int) -> np.ndarray:
        """``[len(rows), 2]`` (top, left) inside the stored square that reproduce
        torchvision's ``CenterCrop(img_size)`` of the full resized image."""
        if not 0 < img_size <= self.resize_size:
            raise ValueError(f"img_size must be in 1..{self.resize_size} (the cache's resize size), got {img_size}")
        g = self.geometry[rows].astype(np.int64)
        # torchvision: int(round((side - crop) / 2.0)), Python round (half to even)
        top = np.array([int(round((h - img_size) / 2.0)) for h in g[:, 0]], dtype=np.int64) - g[:, 2]
        left = np.array([int(round((w - img_size) / 2.0)) for w in g[:, 1]], dtype=np.int64) - g[:, 3]
        span = self.resize_size - img_size
        return np.stack([top.clip(0, span), left.clip(0, span)], axis=1)


def unique_samples(samples: Sequence[Sample]) -> list[Sample]:
    """One sample per path, sorted by path, so the key ignores split order and seed."""
    by_path: dict[str, Sample] = {}
    for s in samples:
        old = by_path.setdefault(s.path, s)
        if old.label != s.label:
            raise DatasetError(f"image {s.path} appears with two labels ({old.label} and {s.label}); fix the annotations")
    return [by_path[p] for p in sorted(by_path)]


def cache_key(samples: Sequence[Sample], resize_size: int, resize: str, root: str | Path | None) -> str:
    """Folder name from (root, file list with labels, sizes and mtimes, resize mode and size)."""
    h = hashlib.sha1()
    h.update(json.dumps({"v": CACHE_VERSION, "root": str(root or ""), "resize": int(resize_size),
                         "mode": resize}).encode())
    for s in samples:
        try:
            st = os.stat(s.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{s.path}\t{s.label}\t{stamp}\t{s.trim_bottom}\t{int(s.exif_transpose)}".encode())
    name = Path(str(root)).name if root else "data"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "data"
    return f"{safe}_{resize}_r{int(resize_size)}_n{len(samples)}_{h.hexdigest()[:12]}"


def resize_square(sample: Sample, resize_size: int, resize: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``(S x S x 3 uint8, (resized_h, resized_w, top, left))`` exactly as torchvision resizes a PIL image
    under the mode ``resize`` (``shorter``: then the central square)."""
    from torchvision.transforms import functional as TF

    size = Geometry(resize, resize_size, resize_size).resize_arg  # img_size does not change the resize
    image = TF.resize(load_sample(sample), size)  # the same call the PIL pipeline's T.Resize makes
    w, h = image.size
    top, left = int(round((h - resize_size) / 2.0)), int(round((w - resize_size) / 2.0))
    square = image.crop((left, top, left + resize_size, top + resize_size))
    return np.asarray(square, dtype=np.uint8), (h, w, top, left)


def open_pixel_cache(path: str | Path) -> PixelCache:
    """Memory-map a finished cache folder (read-only)."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise DatasetError(f"{path} is not a finished pixel cache (no meta.json); delete it to rebuild")
    meta = json.loads(meta_file.read_text())
    if meta.get("version") != CACHE_VERSION:
        raise DatasetError(f"pixel cache {path} has version {meta.get('version')}, need {CACHE_VERSION}; delete it")
    images = np.load(path / "images.npy", mmap_mode="r")
    s = int(meta["resize_size"])
    if images.shape != (int(meta["n"]), s, s, 3) or images.dtype != np.uint8:
        raise DatasetError(f"pixel cache {path}: images.npy has shape {images.shape}, expected ({meta['n']}, {s}, {s}, 3)")
    return PixelCache(
        path=path,
        images=images,
        labels=np.load(path / "labels.npy"),
        geometry=np.load(path / "geometry.npy"),
        paths=json.loads((path / "paths.json").read_text()),
        resize_size=s,
        resize=str(meta["resize"]),
    )


def _build(tmp: Path, samples: list[Sample], resize_size: int, resize: str, workers: int) -> None:
    n, s = len(samples), int(resize_size)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, s, s, 3))
    geometry = np.zeros((n, 4), dtype=np.int32)

    def one(i: int) -> None:
        try:
            pixels, geo = resize_square(samples[i], s, resize)
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(
                f"cannot read image {samples[i].path} while building the pixel cache: {err}; "
                "fix or delete it, or set bad_image_policy: skip"
            ) from err
        images[i] = pixels
        geometry[i] = geo

    if workers <= 1:
        for i in range(n):
            one(i)
    else:  # PIL decode and resize release the GIL
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(n), chunksize=16))
    images.flush()
    del images
    np.save(tmp / "labels.npy", np.array([x.label for x in samples], dtype=np.int64))
    np.save(tmp / "geometry.npy", geometry)
    (tmp / "paths.json").write_text(json.dumps([x.path for x in samples]))
    meta = {"version": CACHE_VERSION, "n": n, "resize_size": s, "resize": resize, "built_at": time.time(), "pid": os.getpid()}
    (tmp / "meta.json").write_text(json.dumps(meta))  # written last: its presence means "complete"


def ensure_pixel_cache(
    samples: Sequence[Sample],
    resize_size: int,
    resize: str,
    root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> PixelCache:
    """Open the cache for these samples at ``resize_size`` under the mode ``resize``, building it on first use.

    Safe when several processes call it at once: one builds (under an exclusive
    ``fcntl`` lock, into a temp folder renamed into place), the others wait for
    the lock and then open the result.
    """
    if int(resize_size) <= 0:
        raise ValueError(f"resize_size must be positive, got {resize_size}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {resize!r}")
    items = unique_samples(samples)
    if not items:
        raise DatasetError("cannot build a pixel cache of zero images")
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir("pixels")
    final = base / cache_key(items, resize_size, resize, root)
    if (final / "meta.json").is_file():
        return open_pixel_cache(final)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".{final.name}.lock", "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # losers block here until the builder is done
        except OSError:  # a filesystem without locks: fall back to racing builders + atomic rename
            pass
        if (final / "meta.json").is_file():
            return open_pixel_cache(final)
        need = len(items) * int(resize_size) ** 2 * 3
        free = shutil.disk_usage(base).free
        if free < need * 1.05:
            raise DatasetError(
                f"pixel cache needs {need / 2**30:.2f} GiB but {base} has {free / 2**30:.2f} GiB free; "
                "point FGVC_CACHE_DIR at a larger (node-local) disk or use pipeline: pil"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=base))
        try:
            _build(tmp, items, int(resize_size), resize, workers or min(8, os.cpu_count() or 1))
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)
            except OSError:  # another builder (no working lock) won the race
                if not (final / "meta.json").is_file():
                    raise DatasetError(f"{final} exists but is incomplete (no meta.json); delete it and retry") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return open_pixel_cache(final)


__all__ = [
    "CACHE_VERSION", "PixelCache", "cache_key", "ensure_pixel_cache", "open_pixel_cache",
    "resize_square", "unique_samples",
]
