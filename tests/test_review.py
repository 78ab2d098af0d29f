from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from db.models import Annotation, Image
from mumic_core.services.review import accept_above, submit, undo
from mumic_core.store.collection import annotate
from mumic_core.store.queue import QueueFilter, image_views, queue_count, queue_page
from mumic_core.store.registry import active_version


def _filter(studio, **kw) -> QueueFilter:
    return QueueFilter(version_id=active_version(studio).id, **kw)


def test_queue_filters_and_orders(demo_studio):
    studio = demo_studio
    assert queue_count(studio, _filter(studio, status="all")) == 60
    assert queue_count(studio, _filter(studio, status="unreviewed")) == 30
    assert queue_count(studio, _filter(studio, status="reviewed")) == 30
    ids = queue_page(studio, _filter(studio, status="all", sort="confidence"), 0, 60)
    views = image_views(studio, ids, active_version(studio).id)
    tops = [v.suggestions[0].probability for v in views]
    assert tops == sorted(tops, reverse=True)
    prio = image_views(
        studio, queue_page(studio, _filter(studio, status="all", sort="priority"), 0, 60), active_version(studio).id
    )
    unc = [min(abs(s.probability - 0.5) for s in v.suggestions) for v in prio]
    assert unc == sorted(unc)  # the top-9 suggestions contain the most uncertain class here
    # a class and a confidence range
    cls = views[0].suggestions[0].class_id
    f = _filter(studio, status="all", class_id=cls, min_score=0.5, max_score=1.0)
    for v in image_views(studio, queue_page(studio, f, 0, 100), active_version(studio).id):
        assert next(s.probability for s in v.suggestions if s.class_id == cls) >= 0.5
    with pytest.raises(ValueError, match="unknown status"):
        queue_count(studio, _filter(studio, status="weird"))


def test_suggestions_are_ranked_and_carry_probabilities(demo_studio):
    version = active_version(demo_studio)
    [view] = image_views(demo_studio, queue_page(demo_studio, _filter(demo_studio), 0, 1), version.id, top_k=5)
    probs = [s.probability for s in view.suggestions]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)


def test_every_present_label_and_every_suspect_is_a_suggestion(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    [image_id] = queue_page(studio, _filter(studio, status="reviewed"), 0, 1)
    [full] = image_views(studio, [image_id], version.id, top_k=100)
    ranked = [sg.class_id for sg in full.suggestions]
    low, lower = ranked[-1], ranked[-2]  # the two least likely classes, far outside the top 2
    annotate(studio, image_id, {low: True}, annotator="ann")
    [view] = image_views(studio, [image_id], version.id, top_k=2, also={image_id: [lower]})
    shown = [sg.class_id for sg in view.suggestions]
    present = [c for c, p in view.labels.items() if p]
    assert shown[:2] == ranked[:2] and low in shown and lower in shown and set(present) <= set(shown)
    assert [sg.probability for sg in view.suggestions] == sorted(
        (sg.probability for sg in view.suggestions), reverse=True
    )


def test_submit_then_undo_restores_the_previous_labels(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    [view] = image_views(studio, queue_page(studio, _filter(studio, status="reviewed"), 0, 1), version.id)
    before = dict(view.labels)
    a, b = view.suggestions[0].class_id, view.suggestions[1].class_id
    submit(studio, view, positives=[a], negatives=[b], annotator="ann")
    [after] = image_views(studio, [view.image_id], version.id)
    assert after.labels[a] is True and after.labels[b] is False and after.review_count == view.review_count + 1
    with studio.read() as s:
        row = s.scalar(
            select(Annotation).where(
                Annotation.image_id == view.image_id, Annotation.class_id == a, Annotation.is_current.is_(True)
            )
        )
    if before.get(a) is not True:
        assert row.annotator == "ann" and row.suggested_score == pytest.approx(view.suggestions[0].probability)
    assert undo(studio, "someone-else") is None  # undo is per person
    assert undo(studio, "ann") is not None
    [restored] = image_views(studio, [view.image_id], version.id)
    assert restored.labels == before and restored.review_count == view.review_count
    assert undo(studio, "ann") is None


def test_undo_keeps_a_later_change_by_someone_else(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    [view] = image_views(studio, queue_page(studio, _filter(studio), 0, 1), version.id)
    c = view.suggestions[0].class_id
    submit(studio, view, [c], [], "ann")
    annotate(studio, view.image_id, {c: False}, "bob")
    undo(studio, "ann")
    [now] = image_views(studio, [view.image_id], version.id)
    assert now.labels[c] is False
    with studio.read() as s:
        assert s.scalar(select(Image.review_count).where(Image.id == view.image_id)) == 1


def test_bulk_accept_above_threshold_and_disputed(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    views = image_views(studio, queue_page(studio, _filter(studio, sort="confidence"), 0, 6), version.id)
    t = 0.5
    n = accept_above(studio, views, t, "ann")
    expected = sum(1 for v in views for s in v.suggestions if s.probability >= t)
    assert n == expected > 0
    for v in image_views(studio, [v.image_id for v in views], version.id):
        assert all(v.labels.get(s.class_id) is True for s in v.suggestions if s.probability >= t)
    # another annotator disagrees on one label: the image becomes disputed
    v = views[0]
    c = next(s.class_id for s in v.suggestions if s.probability >= t)
    annotate(studio, v.image_id, {c: False}, "bob")
    disputed = queue_page(studio, _filter(studio, status="disputed"), 0, 100)
    assert v.image_id in disputed


def test_submit_refuses_contradictions_and_anonymous(demo_studio):
    version = active_version(demo_studio)
    [view] = image_views(demo_studio, queue_page(demo_studio, _filter(demo_studio), 0, 1), version.id)
    c = view.suggestions[0].class_id
    with pytest.raises(ValueError, match="both present and absent"):
        submit(demo_studio, view, [c], [c], "ann")
    with pytest.raises(ValueError, match="annotator"):
        submit(demo_studio, view, [c], [], "  ")


def _sql_queue(studio, f: QueueFilter) -> list[int]:
    """The queue as plain SQL (no process caches, no in-memory orders): the reference."""
    from mumic_core.store.queue import page_query

    with studio.read() as s:
        return list(s.scalars(page_query(f)))


def _check_against_sql(studio, holder: str) -> None:
    from mumic_core.store.collection import all_image_ids

    vid = active_version(studio).id
    window = tuple(int(i) for i in all_image_ids(studio)[-30:])  # a page's images, as the Review page checks them
    variants = [(skip, lo, None) for skip in (None, holder) for lo in (0.0, 0.3)] + [(holder, 0.0, window)]
    for status in ("all", "unreviewed", "reviewed", "disputed"):
        for sort in ("priority", "confidence", "newest"):
            for skip, lo, chosen in variants:
                f = QueueFilter(
                    vid, status=status, sort=sort, skip_leased_by_others=skip, min_score=lo, image_ids=chosen
                )
                expected = _sql_queue(studio, f)
                assert queue_count(studio, f) == len(expected), f
                got = [i for off in range(0, len(expected) + 7, 7) for i in queue_page(studio, f, off, 7)]
                assert got == expected, f


def test_queue_counts_and_pages_kept_in_memory_agree_with_sql(demo_studio, monkeypatch):
    """Counts from the ids kept per process and deep pages from the order kept in memory equal
    the plain SQL queue, through submits, another reviewer's disagreement, undo, leases held by
    another session and a new class that changes every image's summary."""
    import mumic_core.store.queue as queue
    from mumic_core.pipeline.scoring import _write_predictions, score_classes
    from mumic_core.store.classes import active_classes, add_class
    from mumic_core.store.collection import all_image_ids, class_counts
    from mumic_core.store.leases import claim

    monkeypatch.setattr(queue, "DEEP_PAGE", 5)  # every page past the fifth image comes from memory
    studio = demo_studio
    _check_against_sql(studio, "me")
    vid = active_version(studio).id
    newest = queue_page(studio, QueueFilter(vid, status="unreviewed", sort="newest"), 0, 10)
    views = image_views(studio, newest[:4], vid)
    accept_above(studio, views, 0.5, "ann")
    c = views[0].suggestions[0].class_id
    disputed = queue_count(studio, QueueFilter(vid, status="disputed"))
    annotate(studio, views[0].image_id, {c: True}, "ann")
    annotate(studio, views[0].image_id, {c: False}, "bob")  # a dispute
    assert queue_count(studio, QueueFilter(vid, status="disputed")) == disputed + 1
    claim(studio, "other-tab", "carol", newest[4:7])
    _check_against_sql(studio, "me")
    undo(studio, "ann")
    _check_against_sql(studio, "me")
    annotate(studio, views[1].image_id, {c: True}, "dan")  # after the undo, a new dispute
    annotate(studio, views[1].image_id, {c: False}, "eve")
    _check_against_sql(studio, "me")
    score_classes(studio, active_version(studio), [add_class(studio, "kite", ["a red kite in the sky"]).id])
    _check_against_sql(studio, "me")
    # new scores for every image and class reorder every queue
    image_ids, class_ids = all_image_ids(studio), [c.id for c in active_classes(studio)]
    prob = np.random.default_rng(5).random((len(image_ids), len(class_ids)), dtype=np.float32)
    _write_predictions(studio, vid, image_ids, class_ids, prob, True)
    _check_against_sql(studio, "me")
    stored = prob.astype(np.float16)  # the dashboard's predicted positives follow the new scores
    predicted = {row["class"]: row["predicted ≥ 0.5"] for row in class_counts(studio, vid)}
    assert predicted == {c.name: int((stored[:, k] >= 0.5).sum()) for k, c in enumerate(active_classes(studio))}


def test_queue_orders_are_stored_with_the_summaries_for_their_scores_revision(demo_studio):
    """What a process reads for deep pages: the stored order equals the SQL one, and is not used
    once the summaries change without it (new images scored, another revision)."""
    from mumic_core.store.scores import mark_changed, stored_queue_order

    studio = demo_studio
    vid = active_version(studio).id
    for sort in ("priority", "confidence"):
        with studio.read() as s:
            stored = stored_queue_order(s, vid, sort)
        assert stored is not None and stored.tolist() == _sql_queue(studio, QueueFilter(vid, status="all", sort=sort))
    with studio.write() as s:
        mark_changed(s.connection(), vid)
    with studio.read() as s:
        assert stored_queue_order(s, vid, "priority") is None


def test_queue_orders_sort_by_value_then_id_whatever_the_values():
    from mumic_core.store.scores import queue_orders

    rng = np.random.default_rng(2)
    ids = rng.permutation(np.arange(1, 2001))
    ties = rng.choice([0.0, 0.125, 0.25, 0.5], 2000)  # float32 values, many ties
    rough = rng.random(2000)  # float64 values that float32 would round: the two-key sort
    for top, unsure in ((ties, ties[::-1].copy()), (rough, rough / 2), (rough.astype(np.float32), ties)):
        got = queue_orders(ids, top, unsure)
        assert got["priority"].tolist() == [int(i) for _, i in sorted(zip(unsure.tolist(), ids.tolist()))]
        assert got["confidence"].tolist() == [int(i) for _, i in sorted(zip(top.tolist(), ids.tolist()), reverse=True)]
