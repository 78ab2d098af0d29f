"""User text (file names, class names, prompts) is isolated in captions: a right-to-left override
inside it cannot reverse the text around it."""

from __future__ import annotations

import io
from pathlib import Path

from conftest import signed_in_app
from PIL import Image as PILImage
from sqlalchemy import select

from app_pages.ui import isolate, md
from db.models import Image
from mumic_core.pipeline.scoring import score_collection
from mumic_core.store.collection import import_files
from mumic_core.store.registry import active_version

ROOT = Path(__file__).resolve().parents[1]
RLO, FSI, PDI = "\u202e", "\u2068", "\u2069"


def test_md_isolates_user_text_from_the_caption_around_it():
    shown = md(f"invoice{RLO}gpj.exe")
    assert shown.startswith(FSI) and shown.endswith(PDI) and RLO in shown
    # A PDI inside the text cannot end the isolation early (it would let the override leak out).
    sneaky = md(f"a{PDI}{RLO}b")
    assert sneaky.count(PDI) == 1 and sneaky.endswith(PDI)
    assert isolate(f"x{FSI}y") == f"{FSI}xy{PDI}"
    assert isolate(f"a\n{RLO}b\u2029c") == f"{FSI}a {RLO}b c{PDI}"  # no new paragraph escapes the isolate
    assert md("*bold* [link](x)") == f"{FSI}\\*bold\\* \\[link\\]\\(x\\){PDI}"


def test_review_header_isolates_a_file_name_with_an_override(demo_studio):
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), "orange").save(out, "PNG")
    name = f"photo{RLO}gnp.exe"
    import_files(demo_studio, [(name, out.getvalue())])
    score_collection(demo_studio, active_version(demo_studio))
    with demo_studio.read() as s:
        image_id = s.scalar(select(Image.id).where(Image.original_name == name))
    at = signed_in_app(ROOT / "app_pages" / "review.py")
    at.session_state["review_selection"] = (image_id,)
    at.run()
    assert not at.exception
    header = at.markdown[0].value
    assert f"{FSI}photo{RLO}gnp\\.exe{PDI}" in header
    assert header.index(PDI) < header.index("64×48")  # what follows the name is outside the isolate
