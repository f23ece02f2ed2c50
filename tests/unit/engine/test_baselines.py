"""Baselines behave sensibly on synthetic series whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from qortex.engine import metrics
from qortex.engine.baselines import (
    ETSDirection,
    MajorityClass,
    Persistence,
    WindowLogistic,
    direction_pairs,
    fit_logistic,
)


def test_direction_pairs_label_moves_and_drop_ties() -> None:
    s = np.array([1.0, 2.0, 2.0, 1.0, 3.0])
    origins, labels = direction_pairs(s, 1)
    assert origins.tolist() == [0.0, 2.0, 3.0]  # 2 -> 2 is a tie
    assert labels.tolist() == [1.0, 0.0, 1.0]
    origins2, labels2 = direction_pairs(s, 2, first_origin=1)
    assert origins2.tolist() == [1.0, 2.0] and labels2.tolist() == [0.0, 1.0]


def test_majority_is_the_smoothed_training_up_rate() -> None:
    s = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 5.0])  # 4 ups, 1 down
    p = MajorityClass().fit([s], 1).predict_proba([s, s[:3]])
    assert p.tolist() == pytest.approx([5 / 7, 5 / 7])


def test_persistence_learns_momentum_and_mean_reversion() -> None:
    alternating = np.tile([0.0, 1.0], 50)
    model = Persistence().fit([alternating], 1)
    # the last move was up, and moves always reverse here: a confident "down"
    assert model.predict_proba([np.array([0.0, 1.0])])[0] < 0.05
    trend = np.cumsum(np.ones(100))
    model = Persistence().fit([trend], 1)
    assert model.predict_proba([np.array([3.0, 4.0])])[0] > 0.95
    assert model.predict_proba([np.array([4.0, 3.0])])[0] < 0.05


def test_fit_logistic_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 1))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(0.5 + 2.0 * x[:, 0])))).astype(float)
    w = fit_logistic(x, y, l2=1e-6)
    assert w == pytest.approx([0.5, 2.0], abs=0.1)


def test_ets_forecast_direction_tracks_a_seasonal_series_out_of_sample() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(300)
    s = 10 + np.sin(2 * np.pi * t / 12) + 0.05 * rng.normal(size=t.size)
    model = ETSDirection(season_length=12).fit([s[:200]], 1)
    origins, labels = direction_pairs(s, 1, first_origin=200)
    p = model.predict_proba([s[: int(o) + 1] for o in origins])
    assert metrics.directional_accuracy(labels, p) > 0.85
    assert metrics.brier_score(labels, p) < 0.15


def test_ets_on_a_random_walk_is_no_better_than_a_coin() -> None:
    rng = np.random.default_rng(2)
    s = 100 + np.cumsum(rng.normal(size=600))
    model = ETSDirection().fit([s[:300]], 1)
    origins, labels = direction_pairs(s, 1, first_origin=300)
    p = model.predict_proba([s[: int(o) + 1] for o in origins])
    assert 0.4 < metrics.directional_accuracy(labels, p) < 0.6
    assert np.all(np.abs(p - 0.5) < 0.2), "a calibrated mapping stays near 0.5 when nothing is predictable"


def test_ets_is_fitted_per_series() -> None:
    with pytest.raises(ValueError):
        ETSDirection().fit([np.arange(50.0), np.arange(50.0)], 1)


def test_window_logistic_uses_seasonal_lags_beyond_the_last_ten_moves() -> None:
    rng = np.random.default_rng(3)
    # Period 16: the next move repeats the move 16 steps back, which the last 10 moves do not show.
    pattern = rng.normal(size=16)
    moves = np.tile(pattern, 60) + 0.1 * rng.normal(size=960)
    s = 100 + np.cumsum(moves)
    model = WindowLogistic(window=32, l2=1.0).fit([s[:600]], 1)
    origins, labels = direction_pairs(s, 1, first_origin=600)
    p = model.predict_proba([s[: int(o) + 1] for o in origins])
    assert metrics.directional_accuracy(labels, p) > 0.9


def test_window_logistic_on_a_random_walk_is_no_better_than_a_coin() -> None:
    rng = np.random.default_rng(4)
    walks = [100 + np.cumsum(rng.normal(size=800)) for _ in range(2)]
    model = WindowLogistic(window=32).fit([w[:400] for w in walks], 1)
    labels, probs = [], []
    for w in walks:
        origins, y = direction_pairs(w, 1, first_origin=400)
        probs.append(model.predict_proba([w[: int(o) + 1] for o in origins]))
        labels.append(y)
    assert 0.42 < metrics.directional_accuracy(np.concatenate(labels), np.concatenate(probs)) < 0.58
