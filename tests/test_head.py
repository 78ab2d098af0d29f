"""The tempered-sigmoid head: centred zero-shot scores, per-class temperatures, saving (issue 19)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mumic_core.model.fitting import HeadFit, fit_head
from mumic_core.model.head import Head, text_center, zero_shot_head
from mumic_core.model.losses import LossConfig


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_centred_zero_shot_does_not_put_an_image_that_resembles_every_prompt_first():
    shared, own = np.eye(8)[7], np.eye(8)[:4]
    text = unit(shared + 0.3 * own)  # four prompts with a large common part
    generic = unit(shared)  # an image of that common part only, of no class in particular
    cat = unit(0.5 * shared + own[0])  # an image of class 0
    emb = np.stack([generic, cat])
    raw = emb @ text.T
    assert raw[0, 0] > raw[1, 0]  # raw cosine: the generic image comes first in class 0
    head = zero_shot_head(emb, text)
    centred = emb @ head.class_matrix(["a", "b", "c", "d"], text).T
    assert centred[1, 0] > centred[0, 0] + 0.1  # centred: the image of class 0 comes first
    np.testing.assert_allclose(head.text_center, text_center(text), atol=1e-6)
    # a class added later is scored against the same centre, so the others' scores do not move
    more = np.vstack([text, unit(np.ones((1, 8)))])
    np.testing.assert_allclose(emb @ head.class_matrix(list("abcde"), more)[:4].T, centred, atol=1e-6)


def test_a_fitted_head_round_trips_through_json_with_its_temperatures_and_centre():
    rng = np.random.default_rng(0)
    emb, text = unit(rng.normal(size=(80, 8))), unit(rng.normal(size=(3, 8)))
    targets = (emb @ text.T > 0.2).astype(np.float32)
    head, _ = fit_head(emb, text, targets, np.ones_like(targets), ["a", "b", "c"], HeadFit(LossConfig("bce"), steps=30))
    assert set(head.temperatures) == {"a", "b", "c"} and head.text_center is not None
    again = Head.from_dict(json.loads(json.dumps(head.to_dict())))
    names = ["a", "b", "c"]
    p1 = head.probabilities(emb @ head.class_matrix(names, text).T, names)
    p2 = again.probabilities(emb @ again.class_matrix(names, text).T, names)
    np.testing.assert_allclose(p1, p2, atol=1e-5)


@pytest.mark.parametrize("loss", ["mumic", "bce", "hill", "splc", "llr", "llct", "wan", "epr", "asl"])
def test_every_loss_fits_a_head_that_ranks_better_than_chance(loss):
    rng = np.random.default_rng(1)
    text = unit(rng.normal(size=(4, 16)))
    truth = (rng.random((200, 4)) < 0.3).astype(np.float32)
    emb = unit(truth @ text + 0.6 * rng.normal(size=(200, 16)))
    tags = truth * (rng.random(truth.shape) > 0.4)  # 40 % of the labels missed
    assumed = (tags == 0).astype(np.float32)
    head, _ = fit_head(
        emb, text, tags, np.ones_like(tags), list("abcd"), HeadFit(LossConfig(loss), steps=30), assumed=assumed
    )
    prob = head.probabilities(emb @ head.class_matrix(list("abcd"), text).T, list("abcd"))
    aps = [average_precision_score(truth[:, c], prob[:, c]) for c in range(4)]
    assert np.mean(aps) > 0.6, aps  # chance is about 0.3


def test_a_zero_shot_head_over_many_images_is_calibrated_on_a_stride_of_them_alike():
    """Beyond max_images the calibration uses an even stride of the images (1M x 120 pairs took
    3 GiB to sort): temperature and offset stay within a few thousandths of all images'."""
    rng = np.random.default_rng(0)
    emb, text = unit(rng.normal(size=(40_000, 16))), unit(rng.normal(size=(6, 16)))
    full = zero_shot_head(emb, text, 0.1, max_images=len(emb))
    strided = zero_shot_head(emb, text, 0.1, max_images=4_000)
    assert strided.temperature == pytest.approx(full.temperature, rel=0.02)
    assert strided.offset == pytest.approx(full.offset, abs=0.01)
    assert strided.offset != full.offset  # a sample, not the same computation


@pytest.mark.parametrize("loss", ["mumic", "bce", "hill"])
def test_a_fit_summed_over_slices_of_images_fits_the_same_head(monkeypatch, loss):
    """Per-pair losses are evaluated a slice of images at a time (a fit's memory stays flat: a
    50k-image fit took 2.5 GiB at its peak, 1.0 GiB sliced); the head is the same as in one piece."""
    from mumic_core.model import fitting

    rng = np.random.default_rng(4)
    text = unit(rng.normal(size=(5, 16)))
    truth = (rng.random((300, 5)) < 0.3).astype(np.float32)
    emb = unit(truth @ text + 0.6 * rng.normal(size=(300, 16)))
    tags = truth * (rng.random(truth.shape) > 0.3)
    mask = (rng.random(truth.shape) < 0.7).astype(np.float32)
    names = list("abcde")

    def fitted(rows: int) -> np.ndarray:
        monkeypatch.setattr(fitting, "FIT_ROWS", rows)
        head, _ = fit_head(emb, text, tags, mask, names, HeadFit(LossConfig(loss), steps=25), assumed=1 - tags)
        return head.probabilities(emb @ head.class_matrix(names, text).T, names)

    np.testing.assert_allclose(fitted(37), fitted(10**9), atol=2e-3)
