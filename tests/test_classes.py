from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import Annotation, AuditEvent, LabelClass
from mumic_core.errors import ClassError
from mumic_core.pipeline.scoring import rank_images_for_prompts, score_classes
from mumic_core.store.classes import list_classes, merge_classes, rename_class, set_active, set_prompts
from mumic_core.store.collection import annotate, current_labels
from mumic_core.store.queue import top_images_for_class
from mumic_core.store.registry import active_version


def _id(studio, name):
    with studio.read() as s:
        return s.scalar(select(LabelClass.id).where(LabelClass.name == name))


def test_rename_refuses_clashes_and_keeps_labels(demo_studio):
    studio = demo_studio
    circle = _id(studio, "circle")
    before = [r for r in current_labels(studio) if r[1] == circle]
    rename_class(studio, circle, "Round Disc")
    assert [r for r in current_labels(studio) if r[1] == circle] == before
    with pytest.raises(ClassError, match="already exists"):
        rename_class(studio, circle, "  SQUARE ")
    with pytest.raises(ClassError, match="empty"):
        rename_class(studio, circle, "   ")


def test_deactivate_hides_but_keeps(demo_studio):
    studio = demo_studio
    star = _id(studio, "star")
    set_active(studio, star, False)
    assert "star" not in [c.name for c in list_classes(studio)]
    assert any(r[1] == star for r in current_labels(studio))
    set_active(studio, star, True)
    assert "star" in [c.name for c in list_classes(studio)]


def test_merge_moves_labels_and_keeps_history(demo_studio):
    studio = demo_studio
    ring, circle = _id(studio, "ring"), _id(studio, "circle")
    ring_pos = {i for i, c, p, _ in current_labels(studio) if c == ring and p}
    with studio.read() as s:
        rows_before = s.scalar(select(func.count(Annotation.id)))
    merge_classes(studio, ring, circle, "lead")
    circle_now = {i: p for i, c, p, _ in current_labels(studio) if c == circle}
    assert all(circle_now[i] for i in ring_pos)  # every ring positive is now a circle positive
    assert "ring" not in [c.name for c in list_classes(studio)]
    with studio.read() as s:
        assert s.scalar(select(func.count(Annotation.id))) >= rows_before  # nothing deleted
        assert s.scalar(select(func.count(Annotation.id)).where(Annotation.class_id == ring)) > 0
    with pytest.raises(ClassError, match="into itself"):
        merge_classes(studio, circle, circle, "lead")


def test_edited_prompts_preview_and_rescore(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    heart = _id(studio, "heart")
    preview = rank_images_for_prompts(studio, version, ["a red heart", "a love symbol"], k=5)
    assert len(preview) == 5 and [p for _, p in preview] == sorted((p for _, p in preview), reverse=True)
    set_prompts(studio, heart, ["a red heart", "a love symbol"], "A heart.")
    score_classes(studio, version, [heart])
    top = top_images_for_class(studio, version.id, heart, k=5)
    assert [i for i, _ in top] == [i for i, _ in preview]
    assert [c.prompt_texts for c in list_classes(studio) if c.id == heart] == [["a red heart", "a love symbol"]]
    annotate(studio, top[0][0], {heart: True}, "ann")


def test_merge_into_an_inactive_class_is_refused_and_an_inactive_source_can_be_folded_in(demo_studio):
    studio = demo_studio
    ring, circle, star = _id(studio, "ring"), _id(studio, "circle"), _id(studio, "star")
    set_active(studio, circle, False)
    with studio.read() as s:
        rows_before = s.scalar(select(func.count(Annotation.id)))
    with pytest.raises(ClassError, match="'circle' is inactive"):
        merge_classes(studio, ring, circle, "lead")
    with studio.read() as s:
        assert s.scalar(select(func.count(Annotation.id))) == rows_before  # nothing was recorded
        assert s.get(LabelClass, ring).active  # and the source is still active
    # An inactive source (a retired class) may be folded into an active one: it stays inactive.
    star_pos = {i for i, c, p, _ in current_labels(studio) if c == star and p}
    set_active(studio, star, False)
    added = merge_classes(studio, star, ring, "lead")
    ring_now = {i: p for i, c, p, _ in current_labels(studio) if c == ring}
    assert added > 0 and all(ring_now[i] for i in star_pos)
    with studio.read() as s:
        assert not s.get(LabelClass, star).active and s.get(LabelClass, ring).active
        merges = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "merge_classes")))
    assert [(e.details["source"], e.details["target"], e.details["labels_added"]) for e in merges] == [
        ("star", "ring", added)
    ]
