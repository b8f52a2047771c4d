"""Decode-check every image of a dataset once per node, and remember the verdicts.

A search starts dozens of trials on the same folder; a truncated JPEG found by
each trial in turn is dozens of identical crashes. So the images are checked
once, before any trial, in parallel (PIL decoding releases the GIL, so threads
scale with cores), and each verdict is stored under
``default_cache_dir("verified")`` keyed by the dataset root and, per file, by
``(path, size, mtime)``: a second check of an unchanged folder decodes nothing,
and a file rewritten since is checked again.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence, TypeVar

from PIL import Image, UnidentifiedImageError

from fgmodels.data.cachedir import default_cache_dir
from fgmodels.data.types import Sample

log = logging.getLogger(__name__)
T = TypeVar("T")

VERIFY_VERSION = 1  # bump when decode_check changes its verdicts: old cache files are then ignored

# Why a file cannot be used; each is written here only.
MISSING = "missing"
EMPTY = "empty"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not an image"
TOO_SMALL = "too small"
UNREADABLE = "unreadable"


class BadFile(NamedTuple):
    """One unusable image: ``reason`` is one of the names above, ``detail`` says more."""

    path: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


class Decoded(NamedTuple):
    """A decode verdict: ``(width, height)`` of a good image, or why it failed."""

    size: tuple[int, int] | None
    reason: str | None = None
    detail: str = ""


def decode_check(path: str) -> Decoded:
    """Decode ``path`` completely; JPEGs in draft mode (DCT scaling), which still
    entropy-decodes every byte, so truncation is caught at a fraction of the cost."""
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except UnidentifiedImageError:
        return Decoded(None, NOT_AN_IMAGE, "PIL cannot identify it: corrupt, or a format PIL does not read")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = TRUNCATED if "truncated" in str(err).lower() else UNREADABLE
        return Decoded(None, reason, f"{type(err).__name__}: {err}")
    if min(size) < 1:
        return Decoded(None, TOO_SMALL, f"degenerate size {size}")
    return Decoded(size)


def size_problem(sample: Sample, size: tuple[int, int]) -> BadFile | None:
    """A decodable image that the sample still cannot use (banner taller than the image)."""
    if sample.trim_bottom and size[1] <= sample.trim_bottom:
        return BadFile(sample.path, TOO_SMALL, f"{size[1]} px high, not more than the {sample.trim_bottom} px banner")
    return None


def verdict_file(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The cache file of one dataset root: readable name plus a hash of the absolute path."""
    root = Path(root).expanduser().absolute()
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir("verified")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name)[:40] or "root"
    return base / f"{safe}_{hashlib.sha1(str(root).encode()).hexdigest()[:12]}.json"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock next to ``path``: trials starting together on a node
    wait for the first one's decode instead of all decoding the same files."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+")
    except OSError:  # read-only cache location: check without the lock
        yield
        return
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks: concurrent checks are still correct
            pass
        yield


def _read(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("version") == VERIFY_VERSION else {}


def _write(path: Path, entries: dict[str, list]) -> None:
    """Atomic: a temp file renamed over the old one, so a reader never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": VERIFY_VERSION, "entries": entries}, f)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("cannot save image verdicts to %s (%s); the next check decodes again", path, err)


def stat_file(path: str) -> tuple[int, int] | BadFile:
    """``(size, mtime_ns)`` of a file worth decoding, else why it is not (missing, empty)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return BadFile(path, MISSING, "no such file")
    except OSError as err:
        return BadFile(path, UNREADABLE, f"{type(err).__name__}: {err}")
    if not stat.S_ISREG(st.st_mode):
        return BadFile(path, MISSING, "not a regular file")
    if st.st_size == 0:
        return BadFile(path, EMPTY, "0 bytes")
    return st.st_size, st.st_mtime_ns


def _parallel_map(fn: Callable[[str], T], items: list[str], workers: int) -> list[T]:
    """Threads: PIL decoding releases the GIL, and ``stat`` on network storage waits on I/O."""
    if workers <= 1 or len(items) < 64:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items, chunksize=32))


def verify_samples(
    samples: Sequence[Sample], root: str | Path, workers: int | None = None, cache_dir: str | Path | None = None,
) -> tuple[list[BadFile], int]:
    """``(bad files in sample order, number of files decoded now)``.

    Missing and empty files are found from ``os.stat`` alone; every other file
    is decoded unless the cache holds a verdict for its current size and mtime.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    paths = list(dict.fromkeys(s.path for s in samples))
    stamps = dict(zip(paths, _parallel_map(stat_file, paths, workers)))
    file = verdict_file(root, cache_dir)
    with _locked(file):
        entries = _read(file)
        todo = [p for p, st in stamps.items() if not isinstance(st, BadFile) and entries.get(p, [])[:2] != list(st)]
        for p, d in zip(todo, _parallel_map(decode_check, todo, workers)):
            entries[p] = [*stamps[p], list(d.size) if d.size else None, d.reason, d.detail]
        if todo:
            _write(file, entries)

    bad: list[BadFile] = []
    for s in samples:
        st = stamps[s.path]
        if isinstance(st, BadFile):
            bad.append(st)
            continue
        _, _, size, reason, detail = entries[s.path]
        problem = BadFile(s.path, reason, detail) if reason else size_problem(s, (size[0], size[1]))
        if problem:
            bad.append(problem)
    return bad, len(todo)


__all__ = [
    "BadFile", "EMPTY", "MISSING", "NOT_AN_IMAGE", "TOO_SMALL", "TRUNCATED", "UNREADABLE", "decode_check",
    "stat_file", "verdict_file", "verify_samples",
]
