"""Image validation, RGB normalisation and content-addressed storage.

Every imported file is fully decoded before it is accepted; a bad file raises
:class:`ImageRejected` with a short human-readable reason so that a batch import can
report it and carry on. Accepted images are stored under their SHA-256, never under a
user-supplied file name.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from mumic_core.encoders.pixels import to_rgb
from mumic_core.store.storage import Storage

MAX_FILE_BYTES = 64 * 2**20
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Pillow format name -> extension used in the store.
_FORMAT_EXT = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "TIFF": "tif",
}
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_EXT_RE = re.compile(r"[a-z0-9]{1,5}")
# Image.MAX_IMAGE_PIXELS is process-global: validations change it only under this lock
# and always restore it.
_PIL_LIMIT_LOCK = threading.RLock()


class ImageRejected(ValueError):
    """A file that cannot be imported; ``reason`` is a short human sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ValidatedImage:
    """Facts about an accepted image (width/height after EXIF orientation)."""

    sha256: str
    width: int
    height: int
    format: str
    ext: str


def _fmt_bytes(n: int) -> str:
    if n >= 2**20:
        return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n / 2**20:.1f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.1f} KiB"
    return f"{n} bytes"


# Signatures of the accepted formats: a file that starts with one but that Pillow cannot open is a
# damaged image of that format (a bad checksum, a zero size), not "not an image".
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _sniff_damaged(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with (a WEBP's is in its RIFF header; a
    BMP's "BM" counts with the four zero bytes that follow its size field, as text rarely has)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and data[6:10] == b"\x00" * 4:
        return "BMP"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


def _sniff_unsupported(data: bytes) -> str | None:
    """Name common non-raster or unsupported formats Pillow cannot identify."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head:
        return "SVG"
    if head.startswith(b"%pdf"):
        return "PDF"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    return None


# Content that a browser or PHP would run, looked for anywhere in the file, in any case: a script
# or embedded-content tag, an HTML doctype, PHP code, and in any tag an event-handler attribute
# (``<svg onload=``, ``<img/onerror=``), a ``javascript:`` URL or the SVG namespace (an SVG
# document). Each is long enough that compressed pixel data practically never holds one by chance
# (README, "Bad inputs"); all start with "<", which the search skips to quickly.
_MARKUP = re.compile(
    rb"<(?:script|iframe|object|embed)[\s/>]|<!doctype\s+html|<\?php\s"
    rb"|<[a-z][a-z0-9-]{0,20}(?=[\s/])[^<>]*?"
    rb"(?:[\s/\"']on[a-z]{3,30}\s*=|javascript:|http://www\.w3\.org/2000/svg)",
    re.IGNORECASE,
)
# Archives and documents by the records their readers need: a ZIP's local-file header and its
# end-of-central-directory record (single-disk: disk numbers 0), a PDF's header and trailer.
_RECORDS = {"ZIP": (b"PK\x03\x04", b"PK\x05\x06\x00\x00\x00\x00"), "PDF": (b"%PDF-", b"%%EOF")}


def _active_payload(data: bytes) -> str | None:
    """A polyglot: the file also holds HTML, script, PHP, SVG, a ZIP archive or a PDF, anywhere in
    it (a browser, PHP, unzip or a PDF reader could read it as that). Camera trailers and
    metadata (XMP, a second image, a motion photo's video) hold none of these."""
    found = _MARKUP.search(data)
    if found:
        text = found.group().lower()
        return "PHP" if text.startswith(b"<?php") else "SVG" if text.endswith(b"/svg") else "HTML"
    for kind, records in _RECORDS.items():
        if all(record in data for record in records):
            return kind
    return None


def _describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def validate_image(data: bytes, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> ValidatedImage:
    """Fully decode ``data`` and return its facts, or raise :class:`ImageRejected`.

    The header dimensions are checked against ``max_pixels`` before any pixel data is
    decoded; only JPEG/MPO, PNG, WEBP, BMP, GIF and TIFF are accepted.
    """
    if not data:
        raise ImageRejected("empty file")
    if len(data) > max_bytes:
        raise ImageRejected(f"file too large: {_fmt_bytes(len(data))} exceeds {_fmt_bytes(max_bytes)}")
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved_limit = Image.MAX_IMAGE_PIXELS
        try:
            # Header only: Pillow's own check is disabled so that we can report the
            # real dimensions; ours follows immediately, before decoding.
            Image.MAX_IMAGE_PIXELS = None
            try:
                img = Image.open(io.BytesIO(data))
            except UnidentifiedImageError:
                damaged, kind = _sniff_damaged(data), _sniff_unsupported(data)
                raise ImageRejected(
                    f"a damaged {damaged} file (its header cannot be read: a bad checksum, size or field)"
                    if damaged
                    else f"unsupported format {kind}"
                    if kind
                    else "not an image (unrecognised format)"
                ) from None
            except Exception as exc:
                raise ImageRejected(f"truncated or corrupt image data ({_describe(exc)})") from exc
            Image.MAX_IMAGE_PIXELS = max_pixels  # guards frames/tiles decoded below
            with img:
                if img.format not in _FORMAT_EXT:
                    raise ImageRejected(f"unsupported format {img.format or 'unknown'}")
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageRejected(f"too large: {width} x {height} pixels exceeds the {max_pixels:,} pixel limit")
                try:
                    img.load()  # first frame only for animated GIF/MPO/TIFF
                except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                    raise ImageRejected(f"too large: {_describe(exc)}") from exc
                except MemoryError as exc:
                    raise ImageRejected("too large: not enough memory to decode") from exc
                except Exception as exc:
                    raise ImageRejected(f"truncated or corrupt image data ({_describe(exc)})") from exc
                payload = _active_payload(data)
                if payload:
                    raise ImageRejected(f"refused: the file also holds {payload} content (a polyglot file)")
                try:
                    rgb = to_rgb(img)
                except Exception as exc:
                    raise ImageRejected(f"cannot convert {img.mode} image to RGB ({_describe(exc)})") from exc
                return ValidatedImage(
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=rgb.width,
                    height=rgb.height,
                    format=img.format,
                    ext=_FORMAT_EXT[img.format],
                )
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit


def validate_file(
    path: Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> tuple[bytes, ValidatedImage]:
    """Read and validate a file, refusing oversized files before reading them."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageRejected(f"file too large: {_fmt_bytes(size)} exceeds {_fmt_bytes(max_bytes)}")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"could not read file ({exc.strerror or _describe(exc)})") from exc
    return data, validate_image(data, max_pixels=max_pixels, max_bytes=max_bytes)


class ImageStore:
    """Content-addressed image files: ``ab/abcd....ext`` in a :class:`Storage` (a local folder,
    or an object store read through a local cache)."""

    def __init__(self, root: Path | Storage) -> None:
        self.storage = root if isinstance(root, Storage) else Storage(Path(root))
        self.root = self.storage.local_root  # None for remote storage

    @staticmethod
    def key_for(sha256: str, ext: str) -> str:
        """The relative path of the image with this hash and extension."""
        if not _SHA_RE.fullmatch(sha256) or not _EXT_RE.fullmatch(ext):
            raise ValueError(f"invalid image key {sha256!r}.{ext!r}")
        return f"{sha256[:2]}/{sha256}.{ext}"

    def path_for(self, sha256: str, ext: str) -> Path:
        """Where the image with this hash and extension lives locally (for remote storage, where
        its cached copy goes)."""
        return self.storage.path(self.key_for(sha256, ext))

    def put(self, data: bytes, validated: ValidatedImage) -> str:
        """Store ``data`` atomically unless already present; return its relative path."""
        if hashlib.sha256(data).hexdigest() != validated.sha256:
            raise ValueError("data does not match validated sha256")
        rel = self.key_for(validated.sha256, validated.ext)
        if not self.storage.exists(rel):
            self.storage.write_bytes(rel, data)
        return rel

    @staticmethod
    def check_relpath(relpath: str) -> str:
        """``relpath`` as a storage key; ValueError when it is absolute, empty or climbs out."""
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"invalid store path {relpath!r}")
        return rel.as_posix()

    def open(self, relpath: str) -> Path:
        """Local path of a stored image given its relative path (fetched first when remote)."""
        key = self.check_relpath(relpath)
        try:
            return self.storage.local_path(key)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not in store: {relpath}") from None

    def paths(self, relpaths: Sequence[str]) -> list[Path]:
        """Local paths of many stored images, in order. Local storage: computed, not checked
        (as fast as joining paths); remote: the ones not cached yet are fetched in one batch."""
        if self.root is not None:
            return [self.root / r for r in relpaths]
        return self.storage.local_paths([self.check_relpath(r) for r in relpaths])


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Yield every regular file below ``folder`` in sorted order, skipping hidden names.

    Files are not filtered by suffix, so callers can report non-images. Symlinked
    directories are not followed, nor symlinked files that lead outside ``folder``;
    unreadable subdirectories are skipped.
    """
    root = Path(folder).resolve()
    yield from _walk(sorted(os.scandir(folder), key=lambda e: e.name), root)


def _walk(entries: list[os.DirEntry], root: Path) -> Iterator[Path]:
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                children = sorted(os.scandir(entry.path), key=lambda e: e.name)
                yield from _walk(children, root)
            elif entry.is_file():
                if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(root):
                    continue
                yield Path(entry.path)
        except OSError:
            continue


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class ImportReport:
    """Outcome of importing a batch of files (names are as the user gave them)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    stopped: str = ""  # why the import stopped before the end (the store could not be written); shown apart

    def summary(self) -> str:
        """One line, e.g. "Added 3 images; 1 duplicate skipped; 2 files rejected"."""
        return (
            f"Added {_plural(len(self.added), 'image')}; "
            f"{_plural(len(self.duplicates), 'duplicate')} skipped; "
            f"{_plural(len(self.rejected), 'file')} rejected"
        )

    def lines(self) -> list[str]:
        """One line per rejected, then per duplicate, file: "name: reason"."""
        return [f"{name}: {reason}" for name, reason in self.rejected + self.duplicates]
