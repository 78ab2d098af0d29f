"""Display renditions: what the pages show instead of the stored file.

A rendition is the image as the model saw it (EXIF-oriented, 8-bit RGB, transparency on white:
``images.load_rgb``), scaled down to at most ``max_side`` pixels and, when it is longer than
``MAX_ASPECT``:1, centred on a neutral canvas of that ratio, so that a tile's height stays
bounded whatever the image's shape. The product encodes it (JPEG; PNG for images of few colours,
such as drawings and screenshots, whose edges JPEG would smear), so the browser never gets a
16-bit, CMYK, huge or EXIF-rotated original that Streamlit would re-encode or show sideways.

Renditions are cached under ``$MUMIC_HOME/cache/renditions/`` by the image's SHA-256 and the
size. Each file is written under a temporary name and renamed into place, so processes that
make the same rendition at once never read a partial file (the last rename wins; both are equal).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from mumic_core.encoders.pixels import load_rgb
from mumic_core.store.storage import Storage
from mumic_core.store.studio import Studio

VIEW = 1280  # the one-image view of the Review page
TILE = 512  # grid, gallery and preview tiles
MAX_ASPECT = 3.0  # longest side : shortest side of a rendition
RECIPE = "v1"  # part of the cache path: a changed recipe makes new files instead of reusing old ones
PAD_COLOUR = (240, 242, 246)
JPEG_QUALITY = 85
FEW_COLOURS = 256  # at most this many colours: PNG
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FORMATS = {"JPEG": "jpg", "PNG": "png"}
_log = logging.getLogger(__name__)


class StoredImage(Protocol):
    """What a rendition needs to know of a stored image (``db.models.Image`` has both)."""

    sha256: str
    relpath: str


@dataclass(frozen=True)
class Rendition:
    """Encoded image bytes to show, or ``problem``: why this image cannot be shown (one line)."""

    data: bytes | None
    format: str = "JPEG"
    problem: str = ""


def renditions(studio: Studio, images: Sequence[StoredImage], max_side: int) -> list[Rendition]:
    """The display renditions of ``images`` (in order) bounded by ``max_side``: read from the
    cache, or made (in parallel) and cached. A file that is missing or cannot be decoded gives
    a rendition with a ``problem`` instead of raising, so the rest of a page still shows."""
    cache = Storage(studio.settings.rendition_cache_dir)
    found = [_cached(cache, im.sha256, max_side) for im in images]
    missing = [k for k, r in enumerate(found) if r is None]
    if missing:
        with ThreadPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1, 4)) as pool:
            made = list(pool.map(lambda k: _make_and_cache(studio, cache, images[k], max_side), missing))
        for k, rendition in zip(missing, made):
            found[k] = rendition
    return found


def fit(img: Image.Image, max_side: int) -> Image.Image:
    """``img`` scaled down to at most ``max_side`` on its long side and, when longer than
    MAX_ASPECT:1, centred on a canvas of that ratio."""
    w, h = img.size
    scale = min(1.0, max_side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    short = math.ceil(max(size) / MAX_ASPECT)
    if min(size) >= short:
        return img
    canvas_size = (max(size[0], short), max(size[1], short))
    canvas = Image.new("RGB", canvas_size, PAD_COLOUR)
    canvas.paste(img, ((canvas_size[0] - size[0]) // 2, (canvas_size[1] - size[1]) // 2))
    return canvas


def encode(img: Image.Image) -> tuple[bytes, str]:
    """(bytes, format) of an RGB image: PNG when it has few colours, else JPEG."""
    fmt = "PNG" if img.getcolors(FEW_COLOURS) is not None else "JPEG"
    out = io.BytesIO()
    if fmt == "PNG":
        img.save(out, "PNG")
    else:
        img.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), fmt


def _key(sha256: str, max_side: int, fmt: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"invalid image hash {sha256!r}")
    return f"{RECIPE}/{sha256[:2]}/{sha256}-{max_side}.{_FORMATS[fmt]}"


def _cached(cache: Storage, sha256: str, max_side: int) -> Rendition | None:
    for fmt in _FORMATS:
        try:
            data = cache.read_bytes(_key(sha256, max_side, fmt))
        except FileNotFoundError:
            continue
        if data:
            return Rendition(data, fmt)
    return None


def _make_and_cache(studio: Studio, cache: Storage, image: StoredImage, max_side: int) -> Rendition:
    try:
        data, fmt = encode(fit(load_rgb(studio.store.open(image.relpath), max_side), max_side))
    except FileNotFoundError:
        _log.warning("no rendition of image %s: its file is missing from the store", image.sha256)
        return Rendition(None, problem="its file is missing from the store")
    except Exception as exc:  # noqa: BLE001 - one image that cannot be shown must not break the page
        _log.warning("no rendition of image %s", image.sha256, exc_info=exc)
        if isinstance(exc, MemoryError):
            return Rendition(None, problem="it is too large to decode here")
        return Rendition(None, problem=f"its file cannot be decoded ({type(exc).__name__})")
    try:
        cache.write_bytes(_key(image.sha256, max_side, fmt), data)
    except OSError as exc:  # e.g. a full disk: show it now, make it again next time
        _log.warning("rendition of image %s not cached: %s", image.sha256, exc)
    return Rendition(data, fmt)
