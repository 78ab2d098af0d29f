"""Active-learning strategies on small hand-made cases whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from mumic_core.model.active_learning import entropy, k_center_greedy, rare_class_boost, select_batch, uncertainty


def test_uncertainty_is_highest_at_the_class_threshold():
    prob = np.array([[0.30, 0.99], [0.01, 0.98], [0.70, 0.50], [0.0, 1.0]])
    thresholds = np.array([0.3, 0.5])
    u = uncertainty(prob, thresholds)
    assert u[0] == pytest.approx(1.0) and u[2] == pytest.approx(1.0)  # a class exactly on its threshold
    assert u[1] < 0.1 and u[3] == pytest.approx(0.0)  # far from both thresholds / certain


def test_entropy_prefers_probabilities_near_one_half():
    e = entropy(np.array([[0.5, 0.5], [0.99, 0.01], [0.5, 0.01]]))
    assert e[0] == pytest.approx(1.0) and e[1] < e[2] < e[0]


def test_rare_classes_are_boosted():
    prob = np.array([[0.9, 0.1], [0.1, 0.6]])
    # class 0 has 99 human positives already, class 1 none: the likely class-1 image wins.
    s = rare_class_boost(prob, np.array([99, 0]))
    assert s[1] > s[0]


def test_k_center_greedy_picks_far_apart_points_first():
    pts = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], dtype=float)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    labelled = np.array([[1.0, 0.0]])
    order = k_center_greedy(pts, labelled, 3)
    assert order[0] == 3  # opposite the labelled point
    assert order[1] == 2  # then the one at 90 degrees
    assert k_center_greedy(pts, np.zeros((0, 2)), 2)[1] != k_center_greedy(pts, np.zeros((0, 2)), 2)[0]


def test_mixed_selection_and_errors():
    rng = np.random.default_rng(0)
    prob = rng.random((50, 4))
    prob[7] = [0.5, 0.5, 0.5, 0.5]
    thresholds = np.full(4, 0.5)
    assert select_batch(prob, thresholds, 1, {"uncertainty": 1.0})[0] == 7
    picked = select_batch(prob, thresholds, 10, {"uncertainty": 1.0, "random": 1.0}, seed=1)
    assert len(set(picked)) == 10 and all(0 <= i < 50 for i in picked)
    assert select_batch(prob, thresholds, 5, {"random": 1.0}, seed=1) != select_batch(
        prob, thresholds, 5, {"random": 1.0}, seed=2
    )
    emb = rng.normal(size=(50, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert len(select_batch(prob, thresholds, 4, {"diversity": 1.0}, embeddings=emb)) == 4
    with pytest.raises(ValueError, match="unknown strategies"):
        select_batch(prob, thresholds, 3, {"confidence": 1.0})
    with pytest.raises(ValueError, match="needs the images' embeddings"):
        select_batch(prob, thresholds, 3, {"diversity": 1.0})
    assert select_batch(prob[:0], thresholds, 3, {"random": 1.0}) == []


def test_order_queue_reorders_the_unreviewed_queue(demo_studio):
    from mumic_core.pipeline.planning import order_queue
    from mumic_core.store.queue import QueueFilter, queue_count
    from mumic_core.store.registry import active_version

    studio = demo_studio
    f = QueueFilter(version_id=active_version(studio).id, status="unreviewed")
    for weights in ({"uncertainty": 1.0}, {"rare": 1.0, "diversity": 1.0}, {"random": 1.0}):
        ids = order_queue(studio, f, weights)
        assert sorted(ids) == sorted(order_queue(studio, f, {"entropy": 1.0}))  # same images, other order
        assert len(ids) == queue_count(studio, f) == 30
    assert order_queue(studio, f, {"random": 1.0}, seed=1) != order_queue(studio, f, {"random": 1.0}, seed=2)
    assert len(order_queue(studio, f, {"uncertainty": 1.0}, pool=10)) == 10


def test_order_queue_diversity_uses_each_candidates_own_embedding(demo_studio):
    """The embeddings are matched to the queue's images in queue order (not id order)."""
    from sqlalchemy import select as sql_select

    from db.models import Annotation
    from mumic_core.pipeline.planning import order_queue
    from mumic_core.pipeline.scoring import image_embeddings, load_scorer
    from mumic_core.store.queue import QueueFilter, queue_page
    from mumic_core.store.registry import active_version

    studio = demo_studio
    version = active_version(studio)
    f = QueueFilter(version_id=version.id, status="unreviewed")
    candidates = queue_page(studio, f, 0, 2000)
    assert candidates != sorted(candidates)  # priority order differs from id order here
    scorer = load_scorer(studio, version)
    emb = image_embeddings(studio, scorer, candidates)
    with studio.read() as s:
        seen = list(s.scalars(sql_select(Annotation.image_id).where(Annotation.is_current.is_(True)).distinct()))
    labelled = image_embeddings(studio, scorer, seen)
    expected = [candidates[k] for k in k_center_greedy(emb, labelled, len(candidates))]
    assert order_queue(studio, f, {"diversity": 1.0}) == expected


def test_the_plans_probabilities_are_the_stored_predictions(demo_studio):
    """The plan recomputes its candidates' probabilities from their embeddings (reading 240k
    stored rows one by one took 10 s at 100k images x 120 classes): they must be the stored ones
    (which are float16: equal to within its rounding, 2^-11 relative)."""
    from mumic_core.pipeline.planning import candidate_probabilities
    from mumic_core.pipeline.scoring import load_scorer
    from mumic_core.store.classes import active_classes
    from mumic_core.store.queue import QueueFilter, queue_page
    from mumic_core.store.registry import active_version
    from mumic_core.store.scores import scores_of_images

    studio = demo_studio
    version = active_version(studio)
    candidates = queue_page(studio, QueueFilter(version_id=version.id), 0, 25)
    classes = active_classes(studio)
    _, prob = candidate_probabilities(studio, load_scorer(studio, version), candidates, classes)
    with studio.read() as s:
        expected = scores_of_images(s, version.id, candidates, [c.id for c in classes])
    assert prob.shape == (25, len(classes)) and not np.isnan(expected).any()
    assert np.abs(prob - expected).max() < 5e-4


def test_human_positives_per_class_come_from_their_partial_index(demo_studio):
    from sqlalchemy import func
    from sqlalchemy import select as sql_select

    from db.models import Annotation
    from mumic_core.store.collection import human_positives_per_class

    studio = demo_studio
    with studio.read() as s:
        plain = dict(
            s.execute(
                sql_select(Annotation.class_id, func.count())
                .where(Annotation.is_current.is_(True), Annotation.positive.is_(True))
                .group_by(Annotation.class_id)
            ).all()
        )
        assert plain and human_positives_per_class(studio) == plain
        if s.get_bind().dialect.name == "sqlite":  # SQLite uses a partial index only for its own words
            conn = s.connection()
            query = sql_select(Annotation.class_id, func.count()).where(Annotation.is_current, Annotation.positive)
            sql = str(query.group_by(Annotation.class_id).compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall())
            assert "ix_annotations_current_positive" in plan, plan


def test_a_plan_loads_no_model_when_the_head_knows_every_class(demo_studio, monkeypatch):
    """Cached embeddings and a head with a learned row per class are all a plan needs: a fresh
    web process does not load the encoder nor run its text tower for it."""
    from dataclasses import replace

    from mumic_core.model.head import Head
    from mumic_core.pipeline import planning, scoring
    from mumic_core.store.classes import active_classes
    from mumic_core.store.queue import QueueFilter
    from mumic_core.store.registry import active_version

    studio = demo_studio
    version = active_version(studio)
    classes = active_classes(studio)
    names = [c.name for c in classes]
    text = scoring.load_scorer(studio, version).text_embeddings([c.prompt_texts for c in classes])
    learned = Head(10.0, 0.2, class_embeddings={n: -row for n, row in zip(names, text)})

    def no_model(*a, **k):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(scoring, "load_encoder", no_model)
    monkeypatch.setattr(scoring, "load_head", lambda studio, version: learned)
    scorer = scoring.load_scorer(studio, version)
    assert np.allclose(scorer.class_matrix(names, []), -text / np.linalg.norm(text, axis=1, keepdims=True), atol=1e-6)
    ids = planning.order_queue(
        studio, QueueFilter(version.id, status="unreviewed"), {"uncertainty": 1.0, "rare": 1.0, "diversity": 1.0}
    )
    assert len(ids) == 30
    # A class the head has no row for falls back to its prompts' text: that needs the model
    # when no text embedding is kept (a fresh process, nothing on disk).
    monkeypatch.setattr(scoring, "_text_cache", {})
    with pytest.raises(AssertionError, match="encoder was loaded"):
        replace(scorer, head=Head(10.0, 0.2), prompts=None).class_matrix(names, [c.prompt_texts for c in classes])


def test_class_text_embeddings_are_kept_on_disk_for_a_fresh_process(demo_studio, monkeypatch):
    """A web process after a restart plans from the head and the kept text embeddings: no model
    load, no text tower; a search's free text is not kept."""
    from mumic_core.pipeline import planning, scoring
    from mumic_core.pipeline.search import search_text
    from mumic_core.store.classes import active_classes
    from mumic_core.store.queue import QueueFilter
    from mumic_core.store.registry import active_version

    studio = demo_studio
    version = active_version(studio)
    classes = active_classes(studio)
    names, prompts = [c.name for c in classes], [c.prompt_texts for c in classes]
    expected = scoring.load_scorer(studio, version).class_matrix(names, prompts)  # scoring kept them
    f = QueueFilter(version.id, status="unreviewed")
    plan = planning.order_queue(studio, f, {"uncertainty": 1.0, "rare": 1.0, "diversity": 1.0})
    search_text(studio, version, "a photo of something nobody asked for")

    def no_model(*a, **k):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(scoring, "_text_cache", {})  # a fresh process
    monkeypatch.setattr(scoring, "load_encoder", no_model)
    scorer = scoring.load_scorer(studio, version)
    assert np.allclose(scorer.class_matrix(names, prompts), expected, atol=1e-6)
    assert planning.order_queue(studio, f, {"uncertainty": 1.0, "rare": 1.0, "diversity": 1.0}) == plan
    assert ("a photo of something nobody asked for",) not in scorer.prompts.get(
        [("a photo of something nobody asked for",)]
    )
    with pytest.raises(AssertionError, match="encoder was loaded"):  # new prompts still need the model
        scorer.class_matrix(["new"], [["a photo of a new thing"]])
