"""Readout features: the window-moves and seasonal groups and their explanation labels."""

from __future__ import annotations

import numpy as np

from qortex.engine import EngineConfig, Predictor
from qortex.engine.features import build_layout, momentum_features, seasonal_features, window_move_features
from qortex.engine.normalise import normalise_windows

from .conftest import SMALL_CONFIG, noisy_sine


def test_window_moves_continue_the_momentum_lags_back_to_the_start_of_the_window() -> None:
    z = np.arange(1, 64, dtype=np.float32)[None, :]  # move k steps back is 64 - k
    momentum = momentum_features(z)
    older = window_move_features(z)
    assert momentum[0, :10].tolist() == [63 - k for k in range(10)]
    assert older.shape == (1, 53)
    assert older[0].tolist() == [64 - k for k in range(11, 64)]


def test_window_moves_are_named_by_how_many_steps_back_they_are() -> None:
    layout = build_layout(EngineConfig())
    labels, groups, _ = layout.factor_matrix()
    assert "momentum 12 steps back" in labels
    assert "momentum 52 steps back" in labels
    assert groups[labels.index("momentum 12 steps back")] == "momentum"
    assert "seasonal move one period back" in labels


def test_seasonal_features_find_the_period_and_the_move_one_period_back() -> None:
    t = np.arange(65, dtype=np.float64)
    raw = np.stack([np.sin(2 * np.pi * t / 12) + 0.01 * t, np.sin(2 * np.pi * t / 7)])
    z, _ = normalise_windows(raw[:, 1:])
    features = seasonal_features(z)
    # The next move of a period-12 series repeats the move 12 steps back: both go the same way.
    next_moves = np.diff(raw[:, -2:], axis=1)[:, 0]
    assert features[0, 0] > 0.8 and features[1, 0] > 0.8  # strength: autocorrelation at the period
    assert np.all(np.sign(features[:, 1]) == np.sign(next_moves))
    assert np.all(np.sign(features[:, 3]) == np.sign(next_moves))


def test_seasonal_features_of_a_window_without_movement_are_zero() -> None:
    assert not seasonal_features(np.zeros((2, 63), dtype=np.float32)).any()
    assert not seasonal_features(np.ones((1, 7), dtype=np.float32)).any()  # too short to compare


def test_a_seasonal_series_gets_seasonal_factors_in_its_explanation() -> None:
    model = Predictor(SMALL_CONFIG).fit([noisy_sine(400, s, period=9.0, noise=0.1) for s in range(4)])
    [result] = model.predict_batch([noisy_sine(80, 11, period=9.0, noise=0.1)])
    names = [f.name for f in result.factors]
    assert any(name.startswith("seasonal") or "steps back" in name for name in names)


def test_reservoir_and_circuit_columns_get_their_own_penalty() -> None:
    series = [noisy_sine(300, s) for s in range(3)]
    loose = Predictor(EngineConfig(**{**SMALL_CONFIG.to_dict(), "reservoir_l2": 1.0})).fit(series)
    tight = Predictor(EngineConfig(**{**SMALL_CONFIG.to_dict(), "reservoir_l2": 1e6})).fit(series)
    deep = np.isin(np.asarray(tight.layout.groups), ("reservoir", "quantum"))
    assert np.abs(tight.readout_.coef[deep]).max() < 1e-3 < np.abs(loose.readout_.coef[deep]).max()


def test_seasonal_features_of_a_series_are_the_same_bits_alone_or_in_a_batch() -> None:
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((300, 63)) * 2).astype(np.float32)
    z[::4] = np.round(z[::4])  # ties between lags must resolve the same way too
    together = seasonal_features(z)
    alone = np.concatenate([seasonal_features(z[i : i + 1]) for i in range(z.shape[0])])
    assert np.array_equal(together, alone)
