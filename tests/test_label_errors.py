"""Label-error detection: cleanlab's ranking on known flips, and out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from mumic_core.model.label_quality import rank_suspects
from mumic_core.pipeline.label_errors import out_of_sample_probabilities, suspicious_labels
from mumic_core.store.registry import active_version


def test_flipped_labels_rank_first():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 6)) < 0.3).astype(np.float32)
    probs = np.clip(truth * 0.8 + 0.1 + rng.normal(0, 0.05, truth.shape), 0.01, 0.99)
    given = truth.copy()
    flips = [(5, 1), (17, 3), (42, 0), (99, 5), (150, 2)]
    for r, c in flips:
        given[r, c] = 1 - given[r, c]
    mask = np.ones_like(given)
    mask[7, :] = 0  # an unlabelled image is never reported
    ranked = rank_suspects(given, mask, probs)
    assert {(r, c) for r, c, _ in ranked[:5]} == set(flips)
    assert all(r != 7 for r, _, _ in ranked)


def test_cross_validation_scores_each_image_with_a_head_that_never_saw_it(monkeypatch):
    from mumic_core.model import fitting
    from mumic_core.model.label_quality import cross_validated_probabilities

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    text = rng.normal(size=(3, 8)).astype(np.float32)
    targets = (rng.random((30, 3)) < 0.3).astype(np.float32)
    row_of = {e.tobytes(): k for k, e in enumerate(emb)}
    seen_rows = []
    original = fitting.fit_head

    def spy(e, *a, **kw):
        seen_rows.append({row_of[x.tobytes()] for x in e})
        return original(e, *a, **kw)

    monkeypatch.setattr(fitting, "fit_head", spy)
    probs = cross_validated_probabilities(emb, text, targets, np.ones_like(targets), ["a", "b", "c"], folds=3)
    assert len(seen_rows) == 3
    held_out = [set(range(30)) - rows for rows in seen_rows]
    assert set().union(*held_out) == set(range(30)) and sum(len(h) for h in held_out) == 30  # each image once
    assert probs.shape == (30, 3) and 0 < probs.min() and probs.max() < 1


def test_suspicious_labels_disagree_with_their_out_of_fold_model(demo_studio):
    studio = demo_studio
    version = active_version(studio)
    labels, probs = out_of_sample_probabilities(studio, version, folds=3)
    assert probs.shape == labels.targets.shape and 0 < probs.min() and probs.max() < 1
    suspects = suspicious_labels(studio, version, limit=10, folds=3)
    assert 0 < len(suspects) <= 10
    assert all(s.given != (s.probability >= 0.5) for s in suspects)  # each disagrees with its model
    with pytest.raises(ValueError, match="at least"):
        out_of_sample_probabilities(studio, version, folds=50)


def test_large_collections_find_wrong_labels_in_a_worker_job(demo_studio, monkeypatch):
    """Above INLINE_LABELLED_IMAGES the Review page queues a job; its result opens the queue."""
    from streamlit.testing.v1 import AppTest
    from test_pages import page

    from mumic_core.pipeline import label_errors
    from mumic_core.pipeline.runner import run_job
    from mumic_core.store.jobs import list_jobs

    monkeypatch.setattr(label_errors, "INLINE_LABELLED_IMAGES", 5)
    at: AppTest = page("review.py").run()
    at.button(key="suspicious").click().run()
    assert not at.exception
    [job] = list_jobs(demo_studio, kind="label_errors")
    assert job.status == "queued" and job.params["version_id"] == active_version(demo_studio).id
    assert any("in the background" in c.value for c in at.caption)
    assert at.button(key="suspicious").disabled  # one search at a time
    done = run_job(demo_studio, job.id)  # what the worker does
    assert done.status == "succeeded" and done.progress == 1.0
    found = label_errors.suspects_of_job(done.result)
    assert found and all(x.given != (x.probability >= 0.5) for x in found)
    at.run()
    at.button(key="suspects_job_btn").click().run()
    assert not at.exception
    assert any(f"chosen from suspicious labels (job {job.id})" in i.value for i in at.info)
    assert any(w.value.startswith("Suspicious:") for w in at.warning)
