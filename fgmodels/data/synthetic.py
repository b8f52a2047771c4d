"""A small, genuinely fine-grained synthetic dataset in the CUB_200_2011 layout.

Every class draws its "bird" (body ellipse + head disc, random pose, scale,
position and body colour, on a cluttered background) from the *same*
distribution; classes differ only in a small patch on the head (~2-3 % of the
image) whose colour *and* pattern together encode the class. The head moves
with the pose, so a model must find the part, as on real FGVC data. It lets
the whole pipeline (and attention/cropping methods, via the recorded part box)
be tested without any download.

Generation is deterministic from the seed, takes well under a second for the
default 600 images, and is cached; several processes may ask at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fgmodels.data.cachedir import default_cache_dir
from fgmodels.data.types import DatasetError

GENERATOR_VERSION = 1  # bump whenever the pixels or files change, so caches refresh

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 235),
    "yellow": (240, 225, 30),
    "magenta": (225, 40, 215),
    "cyan": (40, 220, 225),
    "white": (248, 248, 248),
}
# Mirror-symmetric patterns only: horizontal flip augmentation must not turn
# one class into another.
PATTERNS = ("hstripes", "vstripes", "checker", "ring", "cross")
DARK = (20, 20, 20)
MAX_CLASSES = len(COLOURS) * len(PATTERNS)  # coprime counts: k -> (k % 7, k % 5) is unique for k < 35
PART_NAMES = ("head", "body", "class_part")


def class_spec(k: int) -> tuple[str, str]:
    """(colour, pattern) of class ``k``; each colour and each pattern is shared by several classes."""
    return list(COLOURS)[k % len(COLOURS)], PATTERNS[k % len(PATTERNS)]


def class_name(k: int) -> str:
    colour, pattern = class_spec(k)
    return f"{colour}_{pattern}"


def pattern_mask(pattern: str, side: int) -> np.ndarray:
    """Boolean ``side x side`` mask: True where the class colour goes."""
    c = (np.arange(side) + 0.5) / side
    v, u = np.meshgrid(c, c, indexing="ij")  # v: rows, u: columns
    if pattern == "hstripes":
        return np.floor(v * 3) % 2 == 0
    if pattern == "vstripes":
        return np.floor(u * 3) % 2 == 0
    if pattern == "checker":
        return (np.floor(u * 3) + np.floor(v * 3)) % 2 == 0
    if pattern == "ring":
        return np.maximum(np.abs(u - 0.5), np.abs(v - 0.5)) > 0.25
    if pattern == "cross":
        return (np.abs(u - 0.5) < 0.17) | (np.abs(v - 0.5) < 0.17)
    raise ValueError(f"unknown pattern {pattern!r}")


@dataclass
class Rendered:
    pixels: np.ndarray  # H x W x 3 uint8
    bbox: tuple[int, int, int, int]  # x, y, w, h
    part_box: tuple[int, int, int, int]
    head: tuple[float, float]
    body: tuple[float, float]


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, ang: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    ca, sa = np.cos(ang), np.sin(ang)
    return ((dx * ca + dy * sa) / a) ** 2 + ((-dx * sa + dy * ca) / b) ** 2 <= 1.0


def _clutter(img: np.ndarray, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, size: int) -> None:
    """Random ellipses, rectangles and bars, some in the part colours, so that
    no colour anywhere but on the head tells the class."""
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    for _ in range(int(rng.integers(6, 12))):
        colour = palette[rng.integers(len(palette))] if rng.random() < 0.35 else rng.uniform(0, 255, 3)
        kind = rng.integers(3)
        cx, cy = rng.uniform(0, size, 2)
        if kind == 0:
            a, b = rng.uniform(0.03, 0.12, 2) * size
            mask = _ellipse(xx, yy, cx, cy, a, b, rng.uniform(0, np.pi))
        elif kind == 1:
            w, h = rng.uniform(0.04, 0.2, 2) * size
            mask = (np.abs(xx - cx) <= w / 2) & (np.abs(yy - cy) <= h / 2)
        else:
            ang, length, width = rng.uniform(0, np.pi), rng.uniform(0.2, 0.5) * size, rng.uniform(1.0, 2.5)
            dx, dy = xx - cx, yy - cy
            along = dx * np.cos(ang) + dy * np.sin(ang)
            across = -dx * np.sin(ang) + dy * np.cos(ang)
            mask = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        img[mask] = colour


def render(rng: np.random.Generator, k: int, size: int) -> Rendered:
    """One image of class ``k``; only the head patch depends on ``k``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    base = rng.uniform(60, 200, 3)
    grad = rng.uniform(-40, 40, (2, 3))
    img = base + (xx / size - 0.5)[..., None] * grad[0] + (yy / size - 0.5)[..., None] * grad[1]
    img = img + rng.normal(0, 10, img.shape)
    _clutter(img, rng, xx, yy, size)

    scale, theta = rng.uniform(0.85, 1.15), rng.uniform(0, 2 * np.pi)
    a, b, r_head = 0.22 * size * scale, 0.13 * size * scale, 0.12 * size * scale
    side = int(round(0.15 * size * rng.uniform(0.9, 1.1)))
    dist = a + 0.5 * r_head
    hx, hy = dist * np.cos(theta), dist * np.sin(theta)  # head centre relative to the body centre
    ex = np.sqrt((a * np.cos(theta)) ** 2 + (b * np.sin(theta)) ** 2)
    ey = np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2)
    lo = np.array([min(-ex, hx - r_head, hx - side / 2), min(-ey, hy - r_head, hy - side / 2)])
    hi = np.array([max(ex, hx + r_head, hx + side / 2), max(ey, hy + r_head, hy + side / 2)])
    # Keep the object inside the image and the part clear of what a random crop cuts off.
    margin, part_margin = 2.0, 0.12 * size
    head = np.array([hx, hy])
    low = np.maximum(margin - lo, part_margin - (head - side / 2))
    high = np.minimum(size - 1 - margin - hi, size - part_margin - (head + side / 2))
    centre = np.where(low <= high, rng.uniform(0, 1, 2) * np.maximum(high - low, 0) + low, size / 2)

    body_colour = rng.uniform(30, 230, 3)
    body = _ellipse(xx, yy, centre[0], centre[1], a, b, theta)
    img[body] = body_colour + rng.normal(0, 6, (int(body.sum()), 3))
    hc = centre + head
    head_mask = (xx - hc[0]) ** 2 + (yy - hc[1]) ** 2 <= r_head**2
    img[head_mask] = body_colour * 0.8 + 20

    colour, pattern = class_spec(k)
    x0, y0 = int(round(hc[0] - side / 2)), int(round(hc[1] - side / 2))
    on = pattern_mask(pattern, side)
    tint = np.array(COLOURS[colour], dtype=np.float64) + rng.uniform(-15, 15, 3)
    patch = np.where(on[..., None], tint, np.array(DARK, dtype=np.float64))
    img[y0 : y0 + side, x0 : x0 + side] = patch + rng.normal(0, 4, patch.shape)

    obj = body | head_mask
    obj[y0 : y0 + side, x0 : x0 + side] = True
    ys, xs = np.nonzero(obj)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    pixels = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return Rendered(pixels, bbox, (x0, y0, side, side), (float(hc[0]), float(hc[1])), (float(centre[0]), float(centre[1])))


def write_synthetic(root: Path, num_classes: int, per_class: int, image_size: int, seed: int) -> None:
    """Write the whole dataset into ``root`` (which must exist)."""
    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "bbox", "parts", "part_boxes")}
    image_id = 0
    for k in range(num_classes):
        folder = f"{k + 1:03d}.{class_name(k)}"
        (root / "images" / folder).mkdir(parents=True)
        order = np.random.default_rng([seed, 1_000_003, k]).permutation(per_class)
        train_slots = set(order[: max(1, per_class // 2)].tolist())
        for j in range(per_class):
            image_id += 1
            r = render(np.random.default_rng([seed, k, j]), k, image_size)
            rel = f"{folder}/{class_name(k)}_{j + 1:04d}.png"
            Image.fromarray(r.pixels, mode="RGB").save(root / "images" / rel, optimize=False, compress_level=1)
            lines["images"].append(f"{image_id} {rel}")
            lines["labels"].append(f"{image_id} {k + 1}")
            lines["split"].append(f"{image_id} {int(j in train_slots)}")
            lines["bbox"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in r.bbox))
            lines["part_boxes"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in r.part_box))
            px, py = r.part_box[0] + r.part_box[2] / 2, r.part_box[1] + r.part_box[3] / 2
            for pid, (x, y) in enumerate((r.head, r.body, (px, py)), 1):
                lines["parts"].append(f"{image_id} {pid} {x:.1f} {y:.1f} 1")
    (root / "parts").mkdir()
    files = {
        "images.txt": lines["images"],
        "image_class_labels.txt": lines["labels"],
        "train_test_split.txt": lines["split"],
        "bounding_boxes.txt": lines["bbox"],
        "part_boxes.txt": lines["part_boxes"],
        "parts/part_locs.txt": lines["parts"],
        "parts/parts.txt": [f"{i} {n}" for i, n in enumerate(PART_NAMES, 1)],
        "classes.txt": [f"{k + 1} {k + 1:03d}.{class_name(k)}" for k in range(num_classes)],
    }
    for name, rows in files.items():
        (root / name).write_text("\n".join(rows) + "\n")
    meta = {"generator_version": GENERATOR_VERSION, "num_classes": num_classes, "per_class": per_class,
            "image_size": image_size, "seed": seed, "layout": "CUB_200_2011 + part_boxes.txt"}
    (root / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def synthetic_key(num_classes: int, per_class: int, image_size: int, seed: int) -> str:
    params = {"v": GENERATOR_VERSION, "c": num_classes, "n": per_class, "s": image_size, "seed": seed}
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"cub_synth_c{num_classes}_n{per_class}_px{image_size}_seed{seed}_{digest}"


def _remove_stale_temps(base: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Temp folders of runs killed mid-generation (generation takes seconds, not an hour)."""
    import time

    for tmp in base.glob(f".{name}.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def ensure_synthetic(
    cache_dir: str | Path | None = None, num_classes: int = 10, per_class: int = 60, image_size: int = 80, seed: int = 0
) -> Path:
    """Return the CUB-layout root of the synthetic set, generating it on first use.

    It lives in ``cache_dir/<key>`` (default ``default_cache_dir("synthetic")``). It is written to a temporary folder and
    renamed into place, so concurrent callers never see half a dataset; a loser
    of the race discards its copy, which is identical anyway.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise DatasetError(f"synthetic_classes must be in 2..{MAX_CLASSES}, got {num_classes}")
    if per_class < 2:
        raise DatasetError(f"synthetic_per_class must be >= 2 (one train and one test image), got {per_class}")
    if image_size < 48:
        raise DatasetError(f"synthetic_image_size must be >= 48 so the class part stays legible, got {image_size}")
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir("synthetic")
    final = base / synthetic_key(num_classes, per_class, image_size, seed)
    if (final / "meta.json").is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(base, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=base))
    try:
        os.chmod(tmp, 0o755)
        write_synthetic(tmp, num_classes, per_class, image_size, seed)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise DatasetError(f"{final} exists but is incomplete (no meta.json); delete it and retry") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
