"""Metrics checked against values worked out by hand and against independent reference formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qortex.engine import metrics


def test_directional_accuracy_counts_right_directions_and_half_credits_a_coin() -> None:
    y = [1, 0, 1, 0]
    p = [0.9, 0.2, 0.4, 0.5]
    # right, right, wrong, no direction stated -> (1 + 1 + 0 + 0.5) / 4
    assert metrics.directional_accuracy(y, p) == pytest.approx(0.625)


def test_balanced_accuracy_weights_both_classes_equally() -> None:
    y = [1, 1, 1, 0]
    p = [0.9, 0.8, 0.7, 0.6]  # always says up: 3/3 on ups, 0/1 on downs
    assert metrics.directional_accuracy(y, p) == pytest.approx(0.75)
    assert metrics.balanced_accuracy(y, p) == pytest.approx(0.5)
    assert math.isnan(metrics.balanced_accuracy([1, 1], [0.6, 0.7]))


def test_brier_score_by_hand() -> None:
    # (0.1^2 + 0.2^2 + 0.6^2) / 3
    assert metrics.brier_score([1, 0, 1], [0.9, 0.2, 0.4]) == pytest.approx((0.01 + 0.04 + 0.36) / 3)


def test_log_loss_by_hand_and_clipped() -> None:
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert metrics.log_loss([1, 0], [0.9, 0.2]) == pytest.approx(expected)
    # a confident wrong forecast is finite thanks to clipping
    assert metrics.log_loss([1], [0.0], eps=1e-6) == pytest.approx(-math.log(1e-6))


def test_ece_by_hand_with_two_occupied_bins() -> None:
    y = [1, 0, 1, 1]
    p = [0.15, 0.15, 0.85, 0.95]
    # bin [0.1,0.2): rate 0.5, mean p 0.15 -> |0.35| * 2/4 ; bin [0.8,0.9): 1 vs 0.85 -> 0.15 * 1/4 ;
    # bin [0.9,1.0]: 1 vs 0.95 -> 0.05 * 1/4
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.35 * 0.5 + 0.15 * 0.25 + 0.05 * 0.25)


def test_ece_is_zero_for_perfectly_calibrated_bins_and_puts_one_in_the_last_bin() -> None:
    y = [1, 0, 1, 0, 1, 1]
    p = [0.5, 0.5, 0.5, 0.5, 1.0, 1.0]
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.0)


def _pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Reference AUC: probability a random positive outranks a random negative, ties count half."""
    pos, neg = p[y == 1], p[y == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_by_hand_with_a_tie() -> None:
    y = [1, 0, 1, 0]
    p = [0.8, 0.8, 0.6, 0.2]
    # pairs (pos,neg): (0.8,0.8) half, (0.8,0.2) win, (0.6,0.8) loss, (0.6,0.2) win -> 2.5 / 4
    assert metrics.roc_auc(y, p) == pytest.approx(0.625)


def test_auc_matches_pairwise_reference_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=200).astype(float)
    p = np.round(rng.random(200), 1)  # rounding creates many ties
    assert metrics.roc_auc(y, p) == pytest.approx(_pairwise_auc(y, p))
    assert math.isnan(metrics.roc_auc([1, 1, 1], [0.2, 0.4, 0.9]))


def test_accuracy_at_coverage_keeps_only_confident_forecasts() -> None:
    y = [1, 0, 1, 0, 1]
    p = [0.9, 0.55, 0.3, 0.35, 0.6]
    score = metrics.accuracy_at_coverage(y, p, threshold=0.6)
    # confident: 0.9 (right), 0.3 (wrong), 0.35 (right), 0.6 (right) -> 3/4 over 4/5 of forecasts
    assert score.accuracy == pytest.approx(0.75)
    assert score.coverage == pytest.approx(0.8)
    none = metrics.accuracy_at_coverage(y, p, threshold=0.99)
    assert math.isnan(none.accuracy) and none.coverage == 0.0


def test_score_all_returns_every_named_metric() -> None:
    scores = metrics.score_all([1, 0, 1, 0], [0.7, 0.4, 0.6, 0.2])
    assert set(scores) == set(metrics.METRIC_NAMES)
    assert scores["accuracy"] == 1.0 and scores["auc"] == 1.0


@pytest.mark.parametrize(
    ("y", "p"),
    [([1, 0], [0.5]), ([], []), ([2, 0], [0.5, 0.5]), ([1, 0], [1.2, 0.5]), ([1, 0], [math.nan, 0.5])],
)
def test_bad_inputs_are_refused(y: list[float], p: list[float]) -> None:
    with pytest.raises(ValueError):
        metrics.brier_score(y, p)


def test_the_ece_floor_matches_the_analytic_expectation_for_a_fair_coin() -> None:
    # One bin, p = 0.5: the floor is E|mean of n fair coins - 0.5| ~ sqrt(0.25 / n) * sqrt(2 / pi).
    floor = metrics.ece_floor(np.full(400, 0.5))
    assert floor == pytest.approx(math.sqrt(0.25 / 400) * math.sqrt(2 / math.pi), rel=0.05)
    assert metrics.ece_floor([0.5]) == pytest.approx(0.5)


def test_the_ece_floor_is_zero_for_certain_forecasts_and_shrinks_with_more_of_them() -> None:
    assert metrics.ece_floor([0.0, 1.0, 1.0, 0.0]) == 0.0
    rng = np.random.default_rng(3)
    few, many = rng.uniform(0.15, 0.85, 40), rng.uniform(0.15, 0.85, 1000)
    assert metrics.ece_floor(many) < metrics.ece_floor(few) / 3
    assert metrics.ece_floor(few) == metrics.ece_floor(few)  # seeded


def test_the_ece_floor_refuses_what_the_other_scores_refuse() -> None:
    for bad in ([], [1.2], [math.nan]):
        with pytest.raises(ValueError):
            metrics.ece_floor(bad)
