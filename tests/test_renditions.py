"""Display renditions: pages show the image as the model saw it (EXIF-oriented, 8-bit RGB), bounded
in size and aspect ratio, encoded by the product and cached; never the stored file."""

from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
from conftest import panel_data, signed_in_app
from PIL import Image as PILImage
from sqlalchemy import select
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from db.models import Image
from mumic_core.pipeline.scoring import score_collection
from mumic_core.store.collection import import_files
from mumic_core.store.registry import active_version
from mumic_core.store.renditions import MAX_ASPECT, TILE, VIEW, renditions

ROOT = Path(__file__).resolve().parents[1]


def png16(width: int = 300, height: int = 200) -> bytes:
    """A 16-bit greyscale PNG (Streamlit cannot re-encode it as JPEG)."""
    ramp = np.linspace(0, 65535, width * height).astype(np.uint16).reshape(height, width)
    out = io.BytesIO()
    PILImage.fromarray(ramp).save(out, "PNG")
    return out.getvalue()


def exif_rotated_jpeg(width: int = 2400, height: int = 1600) -> bytes:
    """A large landscape JPEG whose EXIF says "rotate 90° clockwise to show" (orientation 6):
    upright it is portrait, and its raw left edge (red) is the top."""
    img = PILImage.new("RGB", (width, height), (20, 40, 200))
    img.paste((220, 20, 20), (0, 0, width // 5, height))
    exif = PILImage.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def strip_png() -> bytes:
    out = io.BytesIO()
    PILImage.new("L", (1, 20000), 128).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def hostile(demo_studio) -> dict[str, int]:
    """The demo collection plus a 16-bit PNG, an EXIF-rotated large JPEG and a 1×20000 strip,
    scored; their image ids by name."""
    files = {"deep.png": png16(), "rotated.jpg": exif_rotated_jpeg(), "strip.png": strip_png()}
    report = import_files(demo_studio, list(files.items()))
    assert sorted(report.added) == sorted(files), report.lines()
    score_collection(demo_studio, active_version(demo_studio))
    with demo_studio.read() as s:
        return dict(s.execute(select(Image.original_name, Image.id).where(Image.original_name.in_(files))).all())


@pytest.fixture
def served(monkeypatch) -> list[PILImage.Image]:
    """Every image the pages hand to the browser (Streamlit's media store), decoded."""
    shown: list[PILImage.Image] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if mimetype.startswith("image/"):
            data = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
            shown.append(PILImage.open(io.BytesIO(data)))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return shown


def review_of(ids) -> object:
    at = signed_in_app(ROOT / "app_pages" / "review.py")
    at.session_state["review_selection"] = tuple(ids)
    return at


def action_buttons_present(at) -> bool:
    """The review panel (its Accept, Reject, move and undo buttons) is on the page."""
    return bool(panel_data(at) and panel_data(at)["items"])


def assert_bounded(img: PILImage.Image, max_side: int) -> None:
    w, h = img.size
    assert max(w, h) <= max_side, img.size
    assert max(w, h) / min(w, h) <= MAX_ASPECT + 0.01, img.size
    assert img.mode == "RGB"


def test_review_one_image_shows_hostile_images_as_bounded_renditions(hostile, served):
    at = review_of(hostile.values()).run()
    names = []
    for step in range(3):
        assert not at.exception, at.exception
        assert action_buttons_present(at)
        names.append(next(n for n in hostile if n in at.markdown[0].value.replace("\\", "")))
        if step < 2:  # the next image (what the panel's → does)
            at.session_state["offset"] = step + 1
            at.run()
    assert sorted(names) == sorted(hostile)
    assert len(served) >= 3
    for img in served:
        assert_bounded(img, VIEW)
    assert any(img.height > img.width for img in served)  # the EXIF-rotated photo, upright


def test_review_grid_shows_every_tile_bounded(hostile):
    import base64

    at = review_of(hostile.values()).run()
    at.radio(key="mode").set_value("Grid").run()
    assert not at.exception, at.exception
    tiles = panel_data(at, "mumic_grid_panel")["tiles"]
    assert len(tiles) == 3
    for tile in tiles:  # the panel draws the tiles from inlined renditions
        img = PILImage.open(io.BytesIO(base64.b64decode(tile["src"].split(",", 1)[1])))
        assert_bounded(img, TILE)


def test_renditions_show_what_the_model_saw(hostile, demo_studio):
    with demo_studio.read() as s:
        rows = {im.original_name: im for im in s.scalars(select(Image).where(Image.id.in_(hostile.values())))}
    names = list(rows)
    made = dict(zip(names, renditions(demo_studio, [rows[n] for n in names], VIEW)))
    for name, r in made.items():
        assert not r.problem and r.data, name
        img = PILImage.open(io.BytesIO(r.data))
        assert_bounded(img, VIEW)
    rotated = PILImage.open(io.BytesIO(made["rotated.jpg"].data)).convert("RGB")
    assert rotated.size == (VIEW * 2 // 3, VIEW)  # raw 2400×1600, upright 1600×2400
    top, bottom = rotated.getpixel((rotated.width // 2, 10)), rotated.getpixel((rotated.width // 2, VIEW - 10))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # the raw left edge (red) is on top
    strip = PILImage.open(io.BytesIO(made["strip.png"].data))
    assert strip.size == (round(VIEW / MAX_ASPECT), VIEW)
    deep = PILImage.open(io.BytesIO(made["deep.png"].data)).convert("L")
    assert deep.getpixel((0, 0)) < 10 and deep.getpixel((299, 199)) > 245  # 16 bits scaled to 8, not clipped
    # Cached under the store: a second request reads the same bytes, no file is half written.
    cache = demo_studio.settings.home / "cache" / "renditions"
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 3 and not any(p.name.startswith(".") for p in files)
    again = renditions(demo_studio, [rows[n] for n in names], VIEW)
    assert [r.data for r in again] == [made[n].data for n in names]


def test_a_missing_or_corrupt_file_is_one_placeholder_and_the_page_still_works(hostile, demo_studio):
    with demo_studio.read() as s:
        rows = {im.original_name: im for im in s.scalars(select(Image).where(Image.id.in_(hostile.values())))}
    (demo_studio.settings.image_dir / rows["deep.png"].relpath).unlink()
    (demo_studio.settings.image_dir / rows["strip.png"].relpath).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    made = dict(zip(rows, renditions(demo_studio, list(rows.values()), TILE)))
    assert made["deep.png"].data is None and "missing" in made["deep.png"].problem
    assert made["strip.png"].data is None and "cannot be decoded" in made["strip.png"].problem
    assert made["rotated.jpg"].data
    at = review_of([hostile["deep.png"]]).run()
    assert not at.exception, at.exception
    assert action_buttons_present(at)
    assert any("Cannot show this image" in w.value for w in at.warning)
    at.session_state["review_selection"] = tuple(hostile.values())  # the same browser: its leases
    at.radio(key="mode").set_value("Grid").run()
    assert not at.exception, at.exception
    tiles = panel_data(at, "mumic_grid_panel")["tiles"]
    assert len(tiles) == 3 and len([t for t in tiles if not t["src"] and t["problem"]]) == 2, tiles


def test_explore_and_classes_galleries_use_renditions(hostile, demo_studio, served):
    at = signed_in_app(ROOT / "app_pages" / "explore.py").run()
    at.text_input(key="similar_to").set_value(str(hostile["strip.png"])).run()  # a file name or an id
    assert not at.exception, at.exception
    assert len(served) == 18 and all(max(i.size) <= TILE for i in served)
    assert_bounded(served[0], TILE)  # the strip itself comes first
    served.clear()
    at = signed_in_app(ROOT / "app_pages" / "classes.py").run()
    preview = next(b for b in at.button if b.label == "Preview these prompts")
    preview.click().run()
    assert not at.exception, at.exception
    assert len(served) == 12
    for img in served:
        assert_bounded(img, TILE)


def _make_tiles(studio, rows) -> list[int]:
    return [len(r.data or b"") for r in renditions(studio, rows, TILE)]


def test_processes_making_the_same_renditions_at_once_leave_whole_files(hostile, demo_studio):
    with demo_studio.read() as s:
        rows = list(s.scalars(select(Image).where(Image.id.in_(hostile.values()))))
    with ProcessPoolExecutor(4, mp_context=get_context("fork")) as pool:
        sizes = list(pool.map(_make_tiles, [demo_studio] * 8, [rows] * 8))
    assert all(all(sizes[0]) and s == sizes[0] for s in sizes)
    files = [p for p in (demo_studio.settings.home / "cache" / "renditions").rglob("*") if p.is_file()]
    assert len(files) == 3 and not any(p.name.startswith(".") for p in files)  # no temporary file left
    for p in files:
        assert_bounded(PILImage.open(p), TILE)
