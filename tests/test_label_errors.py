"""Label-error detection: cleanlab's ranking on known flips, and out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from mumic_core.label_errors import out_of_sample_probabilities, rank_suspects, suspicious_labels
from mumic_core.registry import active_version


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


def test_suspicious_labels_use_out_of_fold_heads(demo_studio, monkeypatch):
    studio = demo_studio
    version = active_version(studio)
    seen_rows = []
    from mumic_core import training

    original = training._train_head

    def spy(studio_, scorer, labels, rows, *a, **kw):
        seen_rows.append(set(rows.tolist()))
        return original(studio_, scorer, labels, rows, *a, **kw)

    monkeypatch.setattr(training, "_train_head", spy)
    labels, probs = out_of_sample_probabilities(studio, version, folds=3)
    assert len(seen_rows) == 3
    n = len(labels.image_ids)
    held_out = [set(range(n)) - rows for rows in seen_rows]
    assert set().union(*held_out) == set(range(n)) and sum(len(h) for h in held_out) == n  # each image once
    assert probs.shape == labels.targets.shape and 0 < probs.min() and probs.max() < 1
    suspects = suspicious_labels(studio, version, limit=10, folds=3)
    assert 0 < len(suspects) <= 10
    assert all(s.given != (s.probability >= 0.5) for s in suspects)  # each disagrees with its model
    with pytest.raises(ValueError, match="at least"):
        out_of_sample_probabilities(studio, version, folds=50)
