"""Tests for mumic_core.model.metrics against hand-worked values."""

import json
import math

import numpy as np
import pytest

from mumic_core.model.metrics import (
    cross_fitted_f1,
    evaluate,
    expected_calibration_error,
    f1_at_thresholds,
    gap,
    gap_at_k,
    global_average_precision,
    mean_average_precision,
    per_class_average_precision,
    shuffled_chance,
    tune_thresholds,
)

# 3 images x 3 classes.
GAP_SCORES = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6], [0.5, 0.3, 0.4]])
GAP_TRUTH = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])

# 4 images x 3 classes; class 2 has no positive.
SCORES = np.array([[0.9, 0.2, 0.1], [0.8, 0.6, 0.2], [0.3, 0.7, 0.3], [0.1, 0.1, 0.4]])
TRUTH = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_gap_top2_by_hand():
    # top-2 per image: (0.9,1) (0.8,0) | (0.7,1) (0.6,0) | (0.5,0) (0.4,1).
    # The positive (image 0, class 2, score 0.1) is outside every top-2 list but
    # still counts in the recall denominator: 4 positives in total.
    # Pooled ranking: 0.9(1) 0.8(0) 0.7(1) 0.6(0) 0.5(0) 0.4(1)
    # Hits at ranks 1, 3, 6 -> precisions 1, 2/3, 3/6.
    # GAP = (1 + 2/3 + 1/2) / 4 = (13/6) / 4 = 13/24
    assert global_average_precision(GAP_SCORES, GAP_TRUTH, top_k=2) == pytest.approx(13 / 24)
    assert gap_at_k(GAP_SCORES, GAP_TRUTH, k=2) == pytest.approx(13 / 24)


def test_gap_all_predictions_by_hand():
    # Full ranking: 0.9(1) 0.8(0) 0.7(1) 0.6(0) 0.5(0) 0.4(1) 0.3(0) 0.2(0) 0.1(1)
    # Hits at ranks 1, 3, 6, 9: (1 + 2/3 + 1/2 + 4/9) / 4 = (47/18) / 4 = 47/72
    assert gap(GAP_SCORES, GAP_TRUTH) == pytest.approx(47 / 72)
    assert global_average_precision(GAP_SCORES, GAP_TRUTH, top_k=None) == pytest.approx(47 / 72)
    # top_k >= C is the same as no cut.
    assert gap_at_k(GAP_SCORES, GAP_TRUTH, k=10) == pytest.approx(47 / 72)


def test_gap_perfect_ranking_and_no_positives():
    rng = np.random.default_rng(0)
    truth = (rng.random((20, 8)) < 0.3).astype(int)
    truth[0, 0] = 1
    scores = truth + 0.1 * rng.random((20, 8))
    assert gap(scores, truth) == pytest.approx(1.0)
    assert gap_at_k(scores, truth, 8) == pytest.approx(1.0)
    assert gap(scores, np.zeros_like(truth)) == 0.0


def test_map_ignores_class_without_positive():
    # Class 0: ranking 0.9(1) 0.8(0) 0.3(1) 0.1(0) -> AP = (1 + 2/3) / 2 = 5/6
    # Class 1: ranking 0.7(0) 0.6(1) ...          -> AP = 1/2
    # Class 2: no positive -> NaN, ignored. mAP = (5/6 + 1/2) / 2 = 2/3
    ap = per_class_average_precision(SCORES, TRUTH)
    assert ap[:2] == pytest.approx([5 / 6, 1 / 2])
    assert math.isnan(ap[2])
    assert mean_average_precision(SCORES, TRUTH) == pytest.approx(2 / 3)


def test_map_min_positives_filter():
    assert mean_average_precision(SCORES, TRUTH, min_positives=2) == pytest.approx(5 / 6)
    assert math.isnan(mean_average_precision(SCORES, TRUTH, min_positives=3))


def test_tune_thresholds_and_f1_by_hand():
    # Class 0 (truth 1,0,1,0): threshold 0.9 -> F1 2/3; 0.8 -> 1/2; 0.3 -> P=2/3, R=1, F1=0.8;
    #   0.1 -> 2/3. Best 0.3.
    # Class 1 (truth 0,1,0,0): 0.7 -> 0; 0.6 -> P=1/2, R=1, F1=2/3; 0.2 -> 1/2. Best 0.6.
    # Class 2: no positive -> 0.5.
    thr = tune_thresholds(SCORES, TRUTH)
    assert thr == pytest.approx([0.3, 0.6, 0.5])
    # Predictions: class 0 TP2 FP1; class 1 TP1 FP1; class 2 none (all scores < 0.5).
    # Macro over classes with a positive: (0.8 + 2/3) / 2 = 11/15.
    # Micro: TP=3, FP=2, FN=0 -> 6 / (6 + 2) = 3/4.
    f1 = f1_at_thresholds(SCORES, TRUTH, thr)
    assert f1["f1_macro"] == pytest.approx(11 / 15)
    assert f1["f1_micro"] == pytest.approx(3 / 4)


def test_expected_calibration_error():
    # Two bins used: p=0.2 (truth rate 0.25) and p=0.9 (truth rate 1.0), each half.
    # ECE = 0.5 * |0.25 - 0.2| + 0.5 * |1.0 - 0.9| = 0.025 + 0.05 = 0.075
    probs = np.array([[0.2, 0.2, 0.2, 0.2], [0.9, 0.9, 0.9, 0.9]])
    truth = np.array([[1, 0, 0, 0], [1, 1, 1, 1]])
    assert expected_calibration_error(probs, truth, n_bins=10) == pytest.approx(0.075)


def test_evaluate_returns_json_serialisable_keys():
    out = evaluate(
        SCORES,
        TRUTH,
        class_names=["cat", "dog", "bird"],
        majority_min_positives=2,
        f1=True,
    )
    expected_keys = {
        "gap_at_10",
        "gap",
        "map",
        "map_majority",
        "per_class_ap",
        "n_images",
        "n_classes",
        "n_positives",
        "n_known_pairs",
        "f1_macro",
        "f1_micro",
    }
    assert set(out) == expected_keys
    assert out["per_class_ap"]["bird"] is None
    assert out["map"] == pytest.approx(2 / 3)
    assert out["map_majority"] == pytest.approx(5 / 6)
    assert (out["n_images"], out["n_classes"], out["n_positives"]) == (4, 3, 3)
    json.dumps(out, allow_nan=False)
    assert "f1_macro" not in evaluate(SCORES, TRUTH)


def test_shuffled_chance_matches_random_scores_and_is_beaten_by_a_good_ranking():
    rng = np.random.default_rng(0)
    truth = rng.random((400, 6)) < 0.1
    good = truth + rng.normal(0, 0.5, size=truth.shape)
    chance = shuffled_chance(good, truth, mean_average_precision)
    assert chance == shuffled_chance(good, truth, mean_average_precision)  # seeded
    random_maps = [mean_average_precision(rng.random(truth.shape), truth) for _ in range(50)]
    assert chance["mean"] == pytest.approx(np.mean(random_maps), abs=0.01)
    assert truth.mean() < chance["mean"] < chance["p99"] < mean_average_precision(good, truth)
    assert shuffled_chance(good, truth, gap_at_k)["p99"] < gap_at_k(good, truth)


def test_unknown_pairs_are_left_out_not_counted_as_negatives():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7], [0.2, 0.9]])
    truth = np.array([[1, 0], [0, 0], [0, 1], [0, 1]])
    # image 1's class 0 is unknown (nobody judged it): ranked second, it must not cost class 0's AP
    mask = np.ones_like(truth)
    mask[1, 0] = 0
    assert per_class_average_precision(scores, truth)[0] == pytest.approx(1.0)
    assert mean_average_precision(np.array([[0.1, 0.1], [0.9, 0.2], [0.1, 0.7], [0.2, 0.9]]), truth) < 1.0
    masked = evaluate(np.array([[0.8, 0.1], [0.9, 0.2], [0.1, 0.7], [0.2, 0.9]]), truth, mask=mask)
    unmasked = evaluate(np.array([[0.8, 0.1], [0.9, 0.2], [0.1, 0.7], [0.2, 0.9]]), truth)
    assert masked["map"] == pytest.approx(1.0) and unmasked["map"] < 1.0
    assert masked["gap"] == pytest.approx(1.0) and unmasked["gap"] < 1.0
    assert masked["n_known_pairs"] == 7


def test_cross_fitted_f1_is_not_the_best_case_on_the_same_data():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 5)) < 0.3).astype(int)
    scores = rng.random((200, 5))  # no signal: thresholds tuned on the same data still look good
    same_data = f1_at_thresholds(scores, truth, tune_thresholds(scores, truth))["f1_macro"]
    crossed = cross_fitted_f1(scores, truth)["f1_macro"]
    assert crossed < same_data
