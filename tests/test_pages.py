"""Page flows with Streamlit's AppTest (the scripts run in-process against a real store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import panel_data, signed_in_app
from PIL import Image as PILImage
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from app_pages.ui import md
from db.models import Annotation, LabelClass, ReviewLease
from mumic_core.store.queue import QueueFilter, queue_count
from mumic_core.store.registry import active_version
from mumic_core.store.scores import class_column

ROOT = Path(__file__).resolve().parents[1]


def page(name: str, user: str = "ann", role: str = "admin") -> AppTest:
    """A page script, run by a signed-in user."""
    return signed_in_app(ROOT / "app_pages" / name, user, role)


def review_rows(studio) -> int:
    with studio.read() as s:
        return s.scalar(select(func.count(Annotation.id)).where(Annotation.source == "review")) or 0


def test_review_one_image_panel_gives_every_class_a_key_and_blind_hides_the_model(demo_studio):
    """What the page hands its keyboard panel (tests/test_review_keys.py drives it in a browser)."""
    at = page("review.py").run()
    assert not at.exception
    assert "Image 1 of 30" in at.markdown[0].value
    data = panel_data(at)
    items = data["items"]
    assert len(items) == 20  # every active class of the demo, each with its own key
    assert [i["key"] for i in items] == list("1234567890abcdefghij")
    probs = [i["prob"] for i in items]
    assert probs == sorted(probs, reverse=True)  # most likely present first
    assert all(i["on"] == (i["prob"] >= 0.5) for i in items)  # no training yet: 50 % thresholds
    at.toggle(key="blind").set_value(True).run()
    blind = panel_data(at)["items"]
    assert all(i["prob"] is None and not i["on"] for i in blind)
    assert [i["name"] for i in blind] == sorted((i["name"] for i in blind), key=str.casefold)
    assert panel_data(at)["token"] != data["token"]  # a new token: the panel starts over


def test_review_accept_undo_redo_restore_the_whole_decision(demo_studio):
    """Undo puts the image back first with what was decided; redo says it again."""
    from mumic_core.services.review import redo, submit, undo
    from mumic_core.store.queue import image_views

    studio = demo_studio
    unreviewed = QueueFilter(version_id=active_version(studio).id, status="unreviewed")
    before = queue_count(studio, unreviewed)
    at = page("review.py").run()
    first = panel_data(at)
    image_id = int(first["token"].split(":")[0])
    [view] = image_views(studio, [image_id], active_version(studio).id, top_k=20)
    chosen = {first["items"][-1]["id"]}  # the least likely class, added by hand
    submit(studio.as_actor(studio.actor), view, chosen, {i["id"] for i in first["items"][:3]}, "ann")
    assert queue_count(studio, unreviewed) == before - 1
    at.run()
    assert panel_data(at)["token"].split(":")[0] != str(image_id)
    sid = undo(studio, "ann")
    assert queue_count(studio, unreviewed) == before
    again = redo(studio, sid, active_version(studio).id, "ann")
    assert again != sid and queue_count(studio, unreviewed) == before - 1
    with studio.read() as s:
        positives = set(
            s.scalars(
                select(Annotation.class_id).where(
                    Annotation.submission_id == again, Annotation.positive.is_(True), Annotation.is_current.is_(True)
                )
            )
        )
    assert positives == chosen
    with pytest.raises(ValueError, match="nothing to redo"):
        redo(studio, again, active_version(studio).id, "ann")  # not undone


def test_review_grid_shows_a_page_of_tiles_that_follow_the_threshold(demo_studio):
    """The grid panel's page: 12 tiles with file names and top suggestions; a higher threshold
    proposes fewer (the same token: tiles fixed in the browser keep their fixes, test_review_keys.py)."""
    at = page("review.py").run()
    at.radio(key="mode").set_value("Grid").run()
    assert not at.exception
    data = panel_data(at, "mumic_grid_panel")
    assert len(data["tiles"]) == 12 and all(t["name"] and len(t["top"]) == 3 for t in data["tiles"])
    at.slider(key="grid_t").set_value(0.95).run()
    higher = panel_data(at, "mumic_grid_panel")
    assert higher["token"] == data["token"] and higher["threshold"] == 0.95
    assert sum(len(t["chosen"]) for t in higher["tiles"]) < sum(len(t["chosen"]) for t in data["tiles"])


def test_review_filters_by_class_and_confidence(demo_studio):
    at = page("review.py").run()
    with demo_studio.read() as s:
        circle = s.scalar(select(LabelClass.id).where(LabelClass.name == "circle"))
    at.selectbox(key="class_filter").set_value(circle).run()
    at.slider(key="conf").set_value((0.9, 1.0)).run()
    assert not at.exception
    assert any("Nothing in this queue" in i.value for i in at.info) or "Image 1 of" in at.markdown[0].value


def test_classes_add_duplicate_rename_merge(demo_studio):
    studio = demo_studio
    at = page("classes.py").run()
    assert not at.exception
    at.text_input[0].set_value("lilac thing")
    at.text_area[0].set_value("a lilac object\nsomething lilac")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    assert any("Added" in s.value for s in at.success)
    assert any("Zero-shot suggestions" in c.value for c in at.caption)
    with studio.read() as s:
        new_id = s.scalar(select(LabelClass.id).where(LabelClass.name == "lilac thing"))
        n = int((~np.isnan(class_column(s, active_version(studio).id, new_id))).sum())
    assert n == 60
    at.text_input[0].set_value("Lilac  Thing")
    at.button[0].click().run()
    assert any("already exists" in e.value for e in at.error)


def test_dashboard_and_import_export_render(demo_studio, tmp_path: Path):
    at = page("dashboard.py").run()
    assert not at.exception
    assert "Reviewed 30 of 60 images" in at.get("progress")[0].proto.text
    assert len(at.get("plotly_chart")) >= 1
    outside = tmp_path / "outside"
    outside.mkdir()
    (demo_studio.settings.import_root / "more").mkdir(parents=True)
    (demo_studio.settings.import_root / "more" / "inner").mkdir()
    (demo_studio.settings.import_root / "link").symlink_to(outside)
    at = page("import_export.py").run()
    assert not at.exception
    # only folders below the import root are offered, by relative name: no server path in the page
    assert at.selectbox(key="import_folder").options == ["\u2068more\u2069", "\u2068more/inner\u2069"]
    assert not any(str(demo_studio.settings.home) in m.value for m in [*at.markdown, *at.caption])
    folder = demo_studio.settings.import_root / "more"
    PILImage.new("RGB", (50, 50), "purple").save(folder / "new.png")
    (folder / "broken.jpg").write_bytes(b"not really")
    at.selectbox(key="import_folder").set_value("more").run()
    next(b for b in at.button if b.label == "Import folder").click().run()
    assert not at.exception
    assert any("Added 1 image" in w.value for w in list(at.success) + list(at.warning))
    assert any(md("broken.jpg") in m.value and "not an image" in m.value for m in at.markdown)
    assert len(at.get("download_button")) == 6  # labels x3, Label Studio tasks and config, FiftyOne


def test_explore_text_search_map_and_selection_sent_to_review(demo_studio):
    at = page("explore.py").run()
    assert not at.exception
    at.text_input[0].set_value("a red circle").run()
    assert not at.exception
    assert any("Review these 24 images" in b.label for b in at.button)
    assert len(at.get("plotly_chart")) == 1  # the map
    # The Review page shows exactly a selection sent from Explore, until it is cleared.
    review = page("review.py")
    review.session_state["review_selection"] = (40, 45, 50)  # unreviewed images of the demo
    review.run()
    assert not review.exception
    assert any("3 images chosen from the Explore page" in i.value for i in review.info)
    assert "Image 1 of 3" in review.markdown[0].value


def test_suspicious_labels_queue(demo_studio):
    at = page("review.py").run()
    at.button(key="suspicious").click().run()
    assert not at.exception
    assert any("chosen from suspicious labels" in i.value for i in at.info)
    assert any(
        w.value.startswith("Suspicious:") and "never saw this image" in w.value and "is labelled" in w.value
        for w in at.warning
    )


def test_review_default_order_is_active_learning(demo_studio):
    from mumic_core.model.active_learning import DEFAULT_WEIGHTS
    from mumic_core.pipeline.planning import order_queue

    at = page("review.py").run()
    assert not at.exception and at.selectbox(key="sort").value == "active learning"
    plan = order_queue(
        demo_studio, QueueFilter(version_id=active_version(demo_studio).id, status="unreviewed"), DEFAULT_WEIGHTS
    )
    assert at.session_state["plan"] == plan and "Image 1 of 30" in at.markdown[0].value
    at.selectbox(key="sort").set_value("priority").run()
    assert not at.exception


def test_strategy_weights_change_the_plan(demo_studio):
    from mumic_core.pipeline.planning import order_queue

    at = page("review.py").run()
    at.slider(key="w_uncertainty").set_value(0.0).run()
    at.slider(key="w_diversity").set_value(0.5).run()
    assert not at.exception
    plan = order_queue(
        demo_studio,
        QueueFilter(version_id=active_version(demo_studio).id, status="unreviewed"),
        {"rare": 1.0, "diversity": 0.5},
    )
    assert at.session_state["plan"] == plan
    assert any("rare 1 · diversity 0.5" in c.value for c in at.caption), [c.value for c in at.caption]


def test_two_annotators_at_once_are_shown_different_images(demo_studio):
    from mumic_core.services.review import submit
    from mumic_core.store.queue import image_views

    ann, bob = page("review.py", "ann", "annotator").run(), page("review.py", "bob", "annotator").run()
    shown = []
    for at in (ann, bob):
        assert not at.exception
        shown.append(at.markdown[0].value.split(" · ")[1])
    assert shown[0] != shown[1]
    assert any("open for ann, so skipped here" in c.value for c in bob.caption), [c.value for c in bob.caption]
    for at, who in ((ann, "ann"), (bob, "bob")):  # each accepts its image and gets a new one, not the other's
        image_id = int(panel_data(at)["token"].split(":")[0])
        [view] = image_views(demo_studio, [image_id], active_version(demo_studio).id)
        submit(demo_studio, view, set(), set(), who)
    again = [at.run().markdown[0].value.split(" · ")[1] for at in (ann, bob)]
    assert again[0] != again[1] and not set(again) & set(shown)
    for at in (ann, bob):  # a grid page is leased whole: the two pages share no image
        at.radio(key="mode").set_value("Grid").run()
        assert not at.exception
    with demo_studio.read() as s:
        held = [
            set(s.scalars(select(ReviewLease.image_id).where(ReviewLease.holder == at.session_state["holder"])))
            for at in (ann, bob)
        ]
    assert len(held[0]) == len(held[1]) == 12 and not held[0] & held[1]


def test_class_sweep_shows_one_class_over_the_unjudged_images_from_the_model(demo_studio):
    """The sweep panel's page: 24 tiles, each with its file name and the class's probability,
    marked present down to the class's threshold; saving it is driven in a browser (test_review_keys.py)."""
    from mumic_core.store.queue import sweep_candidates

    version = active_version(demo_studio)
    at = page("review.py").run()
    at.radio(key="mode").set_value("Class sweep").run()
    assert not at.exception
    with demo_studio.read() as s:
        star = s.scalar(select(LabelClass.id).where(LabelClass.name == "star"))
    at.selectbox(key="sweep_class").set_value(star).run()
    data = panel_data(at, "mumic_sweep_panel")
    assert data["class_name"] == "star" and len(data["tiles"]) == 24
    expected = sweep_candidates(demo_studio, version.id, star, "most likely", 0.5, 24)
    assert [(t["id"], t["prob"]) for t in data["tiles"]] == [(i, round(p, 4)) for i, p in expected]
    marks = [t["on"] for t in data["tiles"]]
    assert marks == sorted(marks, reverse=True)  # most likely first: present down to the threshold
    assert all(t["name"].endswith(".png") and t["src"].startswith("data:image/") for t in data["tiles"])


def test_pages_draw_only_by_calls_as_the_config_turns_magic_off():
    """.streamlit/config.toml sets runner.magicEnabled = false: a bare expression in a page would
    silently show nothing, so none may be there (docstrings aside)."""
    import ast
    import tomllib

    assert tomllib.loads((ROOT / ".streamlit/config.toml").read_text())["runner"]["magicEnabled"] is False
    bare = []
    for path in [ROOT / "app.py", *(ROOT / "app_pages").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(n.body[0])
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
            and isinstance(n.body[0].value.value, str)
        }
        bare += [
            f"{path.name}:{n.lineno}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Expr)
            and not isinstance(n.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom))
            and id(n) not in docstrings
        ]
    assert not bare, f"bare expressions (magic is off, they show nothing): {bare}"


def test_warm_start_imports_what_the_pages_import():
    import sys

    import streamlit.delta_generator

    from app_pages.warm_start import import_what_pages_use, warm_start

    warm_start()
    names = import_what_pages_use()
    assert {"mumic_core.services.review", "mumic_core.pipeline.planning", "app_pages.review_panel"} <= set(names)
    assert all(name in sys.modules for name in names)
    assert streamlit.delta_generator._use_warning_has_been_displayed is True
