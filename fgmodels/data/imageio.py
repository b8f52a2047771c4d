"""Image decoding that always yields RGB.

Datasets scraped from the web hold greyscale, CMYK, palette and alpha images;
models want 3 channels, so every image goes through :func:`to_rgb`. (Corrupt
files are found before training by :mod:`fgmodels.data.verify`.)
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from fgmodels.data.types import Sample

BACKGROUND = (255, 255, 255)  # what transparent pixels become: their stored RGB is arbitrary


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy of ``im``: alpha is composited over white, 16/32-bit grey is rescaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_rgb(path: str, exif_transpose: bool = False) -> Image.Image:
    """Decode ``path`` fully (so truncation fails here, not later) and return RGB,
    turned upright by its EXIF orientation tag if ``exif_transpose``."""
    with Image.open(path) as im:
        im.load()
        if exif_transpose:
            return to_rgb(ImageOps.exif_transpose(im))
        return to_rgb(im)


def load_sample(sample: Sample) -> Image.Image:
    """The image a sample stands for: decoded, RGB, upright where the layout wants
    it (see ``Sample.exif_transpose``), minus any banner rows.

    Both pipelines (PIL loader and pixel cache) read images only through here,
    so they always see the same pixels."""
    image = load_rgb(sample.path, sample.exif_transpose)
    if sample.trim_bottom:
        w, h = image.size
        if h <= sample.trim_bottom:
            raise ValueError(f"image is {h} px high, not more than the {sample.trim_bottom} px banner to trim")
        image = image.crop((0, 0, w, h - sample.trim_bottom))
    return image
