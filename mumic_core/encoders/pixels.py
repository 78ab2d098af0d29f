"""Decoding image files into what the encoders see: upright (EXIF-oriented) 8-bit RGB."""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

try:
    import pyspng  # libspng: decodes a PNG in about 2/3 of Pillow's time (benchmarks/speed.py)
except ImportError:  # no wheel for this platform (requirements.txt): Pillow decodes every PNG
    pyspng = None

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that leave the pixels Pillow gives for an 8-bit RGB PNG as they are stored: data, and
# colour and metadata chunks that Pillow (and so ``to_rgb``) does not apply. Any other chunk
# (transparency, EXIF or XMP orientation in eXIf or text chunks, animation) takes Pillow's path.
_PLAIN_RGB_CHUNKS = frozenset(
    {b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"pHYs", b"sBIT", b"tIME", b"bKGD", b"hIST"}
)


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
    source: bytes | str | Path,
    min_side: int | None = None,
    then: Callable[[Image.Image], Image.Image] | None = None,
    ready_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """``np.asarray(then(load_rgb(source, min_side=min_side)))`` as (H, W, 3) uint8, without
    copying the decoded image first (the encoders' hot path). ``then`` is skipped for an image
    whose (width, height) is ``ready_size``. A plain 8-bit RGB PNG is decoded by libspng."""
    data = source if isinstance(source, bytes) else _png_file_bytes(source)
    pixels = _plain_rgb_png(data) if data else None
    if pixels is not None:
        if then is None or (pixels.shape[1], pixels.shape[0]) == ready_size:
            return pixels
        return np.asarray(then(Image.fromarray(pixels)), dtype=np.uint8)
    with _opened(source, None, min_side) as img:  # a path, for Pillow's errors to name the file
        rgb = to_rgb(img)
        if then is not None and rgb.size != ready_size:
            rgb = then(rgb)
        return np.asarray(rgb, dtype=np.uint8)


def _png_file_bytes(path: str | Path) -> bytes | None:
    """The whole file if it starts as a PNG does, else None (read by Pillow instead)."""
    with open(path, "rb") as f:
        head = f.read(len(_PNG_SIGNATURE))
        return head + f.read() if head == _PNG_SIGNATURE else None


def _plain_rgb_png(data: bytes) -> np.ndarray | None:
    """The (H, W, 3) pixels of an 8-bit RGB PNG whose chunks are all in ``_PLAIN_RGB_CHUNKS``,
    decoded by libspng: the same array as Pillow's path, in less time. None for anything else,
    for an image over Pillow's size limit and for a file libspng cannot decode, so that
    Pillow's path decodes it or reports it as it reports any image."""
    if pyspng is None or len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if depth != 8 or colour != 2 or width * height > (Image.MAX_IMAGE_PIXELS or math.inf):
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind not in _PLAIN_RGB_CHUNKS:
            return None
        pos += 12 + length
    try:
        return pyspng.load(data, "RGB")
    except Exception:  # corrupt or truncated
        return None


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
