"""Tests for mumic_core.store.images: every image is generated here, under tmp_path."""

from __future__ import annotations

import hashlib
import io
import random
import resource
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from mumic_core.encoders import pixels
from mumic_core.encoders.pixels import load_rgb, rgb_array, to_rgb
from mumic_core.store import images
from mumic_core.store.images import (
    ImageRejected,
    ImageStore,
    ImportReport,
    ValidatedImage,
    iter_image_files,
    validate_file,
    validate_image,
)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(size: tuple[int, int] = (128, 96), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose (valid, CRC-checked) header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def rejected(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        validate_image(data, **kw)
    assert isinstance(info.value, ValueError)
    return info.value.reason


# --- accepted files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "ext"),
    [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif")],
)
def test_good_images_validate(fmt: str, ext: str) -> None:
    data = encode(noise(), fmt)
    v = validate_image(data)
    assert v == ValidatedImage(hashlib.sha256(data).hexdigest(), 128, 96, fmt, ext)


def test_good_files_from_disk(tmp_path: Path) -> None:
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG")):
        path = tmp_path / name
        path.write_bytes(encode(noise(), fmt))
        data, v = validate_file(path)
        assert data == path.read_bytes() and v.format == fmt
        assert load_rgb(path).mode == "RGB" and load_rgb(str(path)).size == (128, 96)
        assert load_rgb(data).size == (128, 96)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert validate_image(data).format == "GIF"
    assert load_rgb(data).getpixel((0, 0)) == (255, 0, 0)


# --- rejected files -----------------------------------------------------------------


def test_corrupt_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(random.Random(1).randbytes(4096))
    with pytest.raises(ImageRejected, match=r"not an image \(unrecognised format\)"):
        validate_file(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images(tmp_path: Path, fmt: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    full = encode(noise((256, 256)), fmt)
    data = full[: int(len(full) * 0.6)]
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as img:  # Pillow itself fails
        img.load()
    reason = rejected(data)
    assert reason.startswith("truncated or corrupt image data (") and "truncated" in reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_file_named_png() -> None:
    assert rejected(b"hello, this is not an image\n") == "not an image (unrecognised format)"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageRejected, match="^empty file$"):
        validate_file(path)


def test_svg_named() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    assert rejected(svg) == "unsupported format SVG"
    assert rejected(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>") == "unsupported format SVG"


def test_pillow_format_outside_allow_list() -> None:
    assert rejected(encode(noise((8, 8)), "PPM")) == "unsupported format PPM"


def test_huge_dimensions_rejected_without_decoding() -> None:
    data = huge_png(100_000, 100_000)
    assert len(data) < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reason = rejected(data)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert reason == "too large: 100000 x 100000 pixels exceeds the 64,000,000 pixel limit"
    assert grown_mib < 200


def test_pixel_limit_override_and_global_restored() -> None:
    saved = Image.MAX_IMAGE_PIXELS
    data = encode(noise((200, 100)), "PNG")
    assert rejected(data, max_pixels=10_000) == ("too large: 200 x 100 pixels exceeds the 10,000 pixel limit")
    assert Image.MAX_IMAGE_PIXELS == saved
    assert validate_image(data, max_pixels=20_000).width == 200
    assert Image.MAX_IMAGE_PIXELS == saved


def test_oversized_file(tmp_path: Path) -> None:
    data = encode(noise(), "PNG")
    assert rejected(data, max_bytes=1000) == f"file too large: {len(data) / 1024:.1f} KiB exceeds 1000 bytes"
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageRejected, match="^file too large"):
        validate_file(path, max_bytes=1000)
    assert images._fmt_bytes(80 * 2**20 + 1) == "80.0 MiB" and images._fmt_bytes(64 * 2**20) == "64 MiB"


def test_bad_files_never_stop_a_batch(tmp_path: Path) -> None:
    (tmp_path / "good.png").write_bytes(encode(noise(), "PNG"))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty.gif").write_bytes(b"")
    report = ImportReport()
    for path in iter_image_files(tmp_path):
        try:
            validate_file(path)
        except ImageRejected as exc:
            report.rejected.append((path.name, exc.reason))
        else:
            report.added.append(path.name)
    assert report.added == ["good.png"]
    assert [name for name, _ in report.rejected] == ["bad.jpg", "empty.gif", "notes.txt"]


# --- polyglots: a file that is an image and also something a browser, PHP, unzip or a PDF reader acts on


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.html", "<p>hello</p>")
    return buf.getvalue()


def jpeg_segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def insert_after_soi(jpeg: bytes, segment: bytes) -> bytes:
    return jpeg[:2] + segment + jpeg[2:]


def png_with_chunk(kind: bytes, body: bytes) -> bytes:
    """A valid PNG with one more chunk just before IEND (CRC right, so Pillow reads it)."""
    data = encode(noise(), "PNG")
    end = data.rindex(b"IEND") - 4
    return data[:end] + png_chunk(kind, body) + data[end:]


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("TIFF with an HTML page appended", encode(noise(), "TIFF") + HTML, "HTML"),
        ("PNG with a ZIP inside a private chunk", png_with_chunk(b"zIPp", zip_archive()), "ZIP"),
        ("PNG with PHP in a text chunk", png_with_chunk(b"tEXt", b"Comment\0<?php system($_GET['c']); ?>"), "PHP"),
        (
            "JPEG with a script in a comment",
            insert_after_soi(encode(noise(), "JPEG"), jpeg_segment(0xFE, b"<SCRIPT SRC=//evil.example/x.js></SCRIPT>")),
            "HTML",
        ),
        (
            "JPEG with an SVG document in an APP segment",
            insert_after_soi(
                encode(noise(), "JPEG"),
                jpeg_segment(0xE9, b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'),
            ),
            "SVG",
        ),
        (
            "GIF with an event handler in its comment",
            encode(noise(), "GIF", comment=b"<img src=x onerror=alert(1)>"),
            "HTML",
        ),
        ("WEBP with a PDF appended", encode(noise(), "WEBP") + PDF, "PDF"),
        ("BMP with a ZIP appended", encode(noise(), "BMP") + zip_archive(), "ZIP"),
        ("TIFF with a ZIP in the middle", encode(noise(), "TIFF", description=zip_archive().decode("latin-1")), "ZIP"),
        (
            "PNG with a custom element's handler after long padding",
            png_with_chunk(b"tEXt", b"c\0<x-y " + b"data-a=b " * 100 + b"onpointerenter=alert(1)>"),
            "HTML",
        ),
        ("GIF with <svg/onload=...>", encode(noise(), "GIF", comment=b"<svg/onload=alert(1)>"), "HTML"),
        (
            "PNG with a handler right after a quoted value",
            png_with_chunk(b"tEXt", b'c\0<img src="x"OnError=alert(1)>'),
            "HTML",
        ),
        (
            "JPEG with a javascript: link in a comment",
            insert_after_soi(encode(noise(), "JPEG"), jpeg_segment(0xFE, b"<a href='JavaScript:alert(1)'>x</a>")),
            "HTML",
        ),
    ],
)
def test_polyglots_are_refused_wherever_the_payload_is(name: str, data: bytes, kind: str) -> None:
    with Image.open(io.BytesIO(data)) as img:  # Pillow reads them as images
        img.load()
    assert rejected(data) == f"refused: the file also holds {kind} content (a polyglot file)", name


def test_camera_trailers_and_metadata_are_allowed() -> None:
    """What cameras and editors put around and inside photos: XMP, a second image (MPO),
    Samsung's trailer, a motion photo's video, a lone local-file header or PDF signature."""
    photo = encode(noise((96, 64), seed=5), "JPEG")
    xmp = (
        b'http://ns.adobe.com/xap/1.0/\0<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description dc:description="a &lt;b&gt;bold&lt;/b&gt; cat on the onion field"/></rdf:RDF>'
        b'</x:xmpmeta><?xpacket end="w"?>'
    )
    samsung = b"\x00\x00\x23\x00\x00\x00Image_UTC_Data1700000000000SEFH\x20\x00\x00\x00\x01\x00\x00\x00SEFT"
    motion = (
        struct.pack(">I", 24)
        + b"ftypmp42\0\0\0\0isommp42"
        + struct.pack(">I", 4104)
        + b"mdat"
        + random.Random(3).randbytes(4096)
    )
    mpo = encode(noise((96, 64)), "MPO", save_all=True, append_images=[noise((96, 64), seed=9)])
    allowed = {
        "JPEG with XMP": insert_after_soi(photo, jpeg_segment(0xE1, xmp)),
        "JPEG with Samsung's trailer": photo + samsung,
        "motion photo (JPEG + MP4)": photo + motion,
        "MPO (two JPEGs)": mpo,
        "PNG with iTXt XMP": png_with_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp[29:]),
        "JPEG with a lone local-file header": photo + b"PK\x03\x04 and nothing more",
        "JPEG with a PDF signature, no trailer": photo + b"%PDF-1.7 header only",
        "PNG with an <html> that is no tag": png_with_chunk(b"tEXt", b"Comment\0<htmlish> and <scripted"),
    }
    for name, data in allowed.items():
        assert validate_image(data).format in ("JPEG", "MPO", "PNG"), name


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_random_content_never_looks_like_a_polyglot(fmt: str) -> None:
    """Noise pictures of varied sizes (their compressed bytes are close to random): none is
    refused. ``benchmarks``-style count over thousands is in the commit and README."""
    rng = random.Random(fmt)
    for k in range(40):
        size = (rng.randrange(16, 400), rng.randrange(16, 400))
        data = encode(noise(size, seed=k), fmt, **({"quality": rng.randrange(30, 100)} if fmt != "TIFF" else {}))
        assert validate_image(data).format == fmt


# --- colour conversion ----------------------------------------------------------------


def test_cmyk_jpeg_to_rgb() -> None:
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    assert validate_image(data).format == "JPEG"
    img = load_rgb(data)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((16, 16))
    assert r > 240 and g < 15 and b < 15


def test_16bit_grayscale_png_scaled() -> None:
    arr = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    src = Image.fromarray(arr)
    assert src.mode.startswith("I;16")
    data = encode(src, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode in ("I;16", "I")  # really stored as 16-bit
    img = load_rgb(data)
    values = [img.getpixel((x, 0)) for x in range(4)]
    assert values[0] == (0, 0, 0) and values[2] == (255, 255, 255) and values[3] == (1, 1, 1)
    assert abs(values[1][0] - 128) <= 1 and len(set(values[1])) == 1
    assert validate_image(data).width == 4


def test_32bit_and_float_modes() -> None:
    i32 = to_rgb(Image.fromarray(np.array([[0, 65535]], dtype=np.int32)))
    assert [i32.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]
    f = to_rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert [f.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_palette_with_transparency_on_white() -> None:
    pal = Image.new("P", (4, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black, 1 red
    pal.putdata([0, 1, 0, 1])
    data = encode(pal, "PNG", transparency=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    img = load_rgb(data)
    assert [img.getpixel((x, 0)) for x in range(4)] == [(255, 255, 255), (255, 0, 0)] * 2


def test_rgba_and_la_composited_on_white() -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 0, 128), (0, 0, 255, 255)])
    img = load_rgb(encode(rgba, "PNG"))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert all(abs(c - 127) <= 1 for c in img.getpixel((1, 0)))
    assert img.getpixel((2, 0)) == (0, 0, 255)
    la = to_rgb(Image.new("LA", (1, 1), (0, 0)))
    assert la.mode == "RGB" and la.getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("1", (2, 2), 1)).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotated_jpeg() -> None:
    src = Image.new("RGB", (40, 20), (255, 0, 0))
    src.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    data = encode(src, "JPEG", exif=exif.tobytes(), quality=95)
    v = validate_image(data)
    assert (v.width, v.height) == (20, 40)
    img = load_rgb(data)
    assert img.size == (20, 40)
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) side is now on top
    assert bottom[2] > 200 and bottom[0] < 60


# --- the encoders' PNG decoding ---------------------------------------------------------------


def rgb16_png(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of ``arr`` (H, W, 3) uint16, which Pillow cannot write."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    ihdr = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 16, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_variants() -> dict[str, tuple[bytes, bool]]:
    """name: (PNG bytes, whether libspng may decode it)."""
    from PIL import PngImagePlugin

    rgb = noise((40, 30), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "a scanner")
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')
    rgba = Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 40, 4), dtype=np.uint8))
    wide = np.random.default_rng(5).integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    return {
        "plain RGB": (encode(rgb, "PNG"), True),
        "RGB with a resolution (pHYs)": (encode(rgb, "PNG", dpi=(300, 300)), True),
        "RGB, transparent colour": (encode(rgb, "PNG", transparency=tuple(rgb.getpixel((0, 0)))), False),
        "RGB, EXIF orientation": (encode(rgb, "PNG", exif=exif.tobytes()), False),
        "RGB, XMP orientation": (encode(rgb, "PNG", pnginfo=xmp), False),
        "RGB, a text chunk": (encode(rgb, "PNG", pnginfo=text), False),
        "16-bit RGB": (rgb16_png(wide), False),
        "RGBA": (encode(rgba, "PNG"), False),
        "grey": (encode(rgb.convert("L"), "PNG"), False),
        "palette": (encode(rgb.quantize(16), "PNG"), False),
    }


@pytest.mark.parametrize("name", list(png_variants()))
def test_encoders_decode_every_png_as_pillow_does(name: str) -> None:
    """libspng decodes only PNGs whose pixels Pillow's path would give unchanged; the rest
    (transparency, orientation, other depths and colour types) keep Pillow's path."""
    data, plain = png_variants()[name]
    expected = np.asarray(load_rgb(data))
    assert (pixels._plain_rgb_png(data) is not None) == (plain and pixels.pyspng is not None)
    got = rgb_array(data)
    assert got.dtype == np.uint8 and got.shape == expected.shape and (got == expected).all()
    half = rgb_array(data, then=lambda img: img.resize((20, 15)))
    assert (half == np.asarray(load_rgb(data).resize((20, 15)))).all()
    assert rgb_array(data, then=lambda img: img.resize((1, 1)), ready_size=expected.shape[1::-1]).shape == got.shape


def test_a_plain_png_decodes_the_same_without_libspng(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(noise((40, 30), seed=6), "PNG")
    fast = rgb_array(data)
    monkeypatch.setattr(pixels, "pyspng", None)
    assert pixels._plain_rgb_png(data) is None
    assert (rgb_array(data) == fast).all()


def test_a_broken_or_oversized_png_is_left_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(noise((40, 30), seed=7), "PNG")
    truncated = data[: len(data) // 2]
    assert pixels._plain_rgb_png(truncated) is None
    with pytest.raises(OSError):
        rgb_array(truncated)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 30 // 4)  # Pillow refuses over twice this
    assert pixels._plain_rgb_png(data) is None
    with pytest.raises(Image.DecompressionBombError):
        rgb_array(data)


# --- storage ------------------------------------------------------------------------------


def test_store_dedupes_and_writes_atomically(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    data = encode(noise(), "PNG")
    a, b = validate_image(data), validate_image(bytes(data))
    assert a.sha256 == b.sha256
    rel = store.put(data, a)
    assert rel == f"{a.sha256[:2]}/{a.sha256}.png"
    assert store.put(data, b) == rel
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files == [store.path_for(a.sha256, "png")]  # one file, no temp leftovers
    assert store.open(rel).read_bytes() == data


def test_store_failed_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)
    data = encode(noise(), "JPEG")
    v = validate_image(data)

    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(images.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put(data, v)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_store_refuses_bad_keys_and_paths(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd", "png")
    with pytest.raises(ValueError):
        store.path_for("a" * 64, "png/../x")
    for bad in ("../x.png", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            store.open(bad)
    with pytest.raises(FileNotFoundError):
        store.open(f"aa/{'a' * 64}.png")
    data = encode(noise(), "PNG")
    wrong = validate_image(encode(noise(seed=1), "PNG"))
    with pytest.raises(ValueError):
        store.put(data, wrong)


# --- folders and reports ------------------------------------------------------------------


def test_iter_image_files(tmp_path: Path) -> None:
    for rel in ("b.png", "a/z.jpg", "a/readme.txt", "c.xmp", ".hidden.png", ".git/x.png", "a/.ds/y.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "emptydir").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a/readme.txt", "a/z.jpg", "b.png", "c.xmp"]
    assert ".png" in images.IMAGE_SUFFIXES and ".tiff" in images.IMAGE_SUFFIXES


def test_import_report() -> None:
    report = ImportReport(
        added=["a.png", "b.png"],
        duplicates=[("c.png", "same content as a.png")],
        rejected=[("d.jpg", "empty file")],
    )
    assert report.summary() == "Added 2 images; 1 duplicate skipped; 1 file rejected"
    assert report.lines() == ["d.jpg: empty file", "c.png: same content as a.png"]
    assert ImportReport().summary() == "Added 0 images; 0 duplicates skipped; 0 files rejected"
