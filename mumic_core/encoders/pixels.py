"""Decoding image files into what the encoders see: upright (EXIF-oriented) 8-bit RGB."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float image to 8-bit "L" over its value range."""
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:  # not a 0..1 image: stretch its actual range
            arr = arr - lo
            hi = hi - lo
        hi = hi if hi > 1 else 1.0
    else:
        base = img if img.mode == "I" else img.convert("I")
        arr = np.clip(np.asarray(base, dtype=np.float32), 0, None)
        hi = max(65535.0, float(arr.max()))
    out = np.rint(arr * np.float32(255.0 / hi)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(out)


def to_rgb(img: Image.Image) -> Image.Image:
    """Return an upright 8-bit RGB version of ``img`` (``img`` itself when it is one already);
    transparency becomes white."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even when upright
            img = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF: keep the pixels as stored
        pass
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if "transparency" in img.info and img.mode in ("1", "L", "P", "RGB"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(source: bytes | str | Path, max_side: int | None = None, min_side: int | None = None) -> Image.Image:
    """Open an image file (or its bytes) and return it as upright RGB. With ``max_side`` (or
    ``min_side``), a JPEG may be decoded at a reduced scale (1/2, 1/4 or 1/8, much faster) that
    still has at least ``max_side`` pixels on its long side (``min_side`` on its short side)."""
    with _opened(source, max_side, min_side) as img:
        rgb = to_rgb(img)
        return img.copy() if rgb is img else rgb


def rgb_array(
    source: bytes | str | Path, min_side: int | None = None, then: Callable[[Image.Image], Image.Image] | None = None
) -> np.ndarray:
    """``np.asarray(then(load_rgb(source, min_side=min_side)))`` as (H, W, 3) uint8, without
    copying the decoded image first (the encoders' hot path)."""
    with _opened(source, None, min_side) as img:
        rgb = to_rgb(img)
        return np.asarray(then(rgb) if then else rgb, dtype=np.uint8)


@contextmanager
def _opened(source: bytes | str | Path, max_side: int | None, min_side: int | None) -> Iterator[Image.Image]:
    """The decoded image, valid inside the block (closing it frees its pixels)."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(fp) as img:
        scale = max_side / max(img.size) if max_side else min_side / min(img.size) if min_side else 1.0
        if scale < 1.0:
            img.draft(None, (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        img.load()
        yield img
