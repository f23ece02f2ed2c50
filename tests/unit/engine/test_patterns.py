"""Each pattern detector fires on the shape it names, with a strength in [0, 1] and a span."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qortex.engine.normalise import last_windows, normalise_windows
from qortex.engine.patterns import PATTERN_TYPES, detect_patterns, spatial_signatures

W = 64
RNG = np.random.default_rng(0)


def _scan(series: np.ndarray):  # type: ignore[no-untyped-def]
    raw, used, _ = last_windows([series], W)
    z, _ = normalise_windows(raw, used)
    return detect_patterns(z, used - 1)


def _strength(series: np.ndarray, name: str) -> float:
    return float(_scan(series).strengths[0, PATTERN_TYPES.index(name)])


def _noise(n: int = W, scale: float = 1.0) -> np.ndarray:
    return np.cumsum(RNG.standard_normal(n) * scale)


def test_eight_pattern_types() -> None:
    assert len(PATTERN_TYPES) == 8


def test_constant_series_is_a_full_strength_plateau_and_nothing_else() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan = _scan(np.full(W, 3.0))
    strengths = dict(zip(PATTERN_TYPES, scan.strengths[0].tolist(), strict=True))
    assert strengths.pop("plateau") == 1.0
    assert all(v == 0.0 for v in strengths.values())
    assert scan.spans[0, PATTERN_TYPES.index("plateau")].tolist() == [0, W - 1]


def test_steady_rise_is_trend_up_not_down() -> None:
    series = np.arange(W) * 0.5 + RNG.standard_normal(W) * 0.3
    assert _strength(series, "trend_up") > 0.8
    assert _strength(series, "trend_down") == 0.0
    assert _strength(-series, "trend_down") > 0.8


def test_sine_is_an_oscillation_with_its_period() -> None:
    series = np.sin(2 * np.pi * np.arange(W) / 8.0)
    scan = _scan(series)
    assert scan.strengths[0, PATTERN_TYPES.index("oscillation")] > 0.8
    assert scan.periods[0] == pytest.approx(8.0, rel=0.1)
    assert _strength(_noise(), "oscillation") < 0.5


def test_alternating_moves_are_mean_reversion() -> None:
    series = np.cumsum(np.tile([1.0, -1.0], W // 2) + RNG.standard_normal(W) * 0.1)
    assert _strength(series, "mean_reversion") > 0.8
    assert _strength(np.arange(W, dtype=float) ** 1.1, "mean_reversion") < 0.2


def test_sudden_large_moves_are_a_volatility_burst() -> None:
    series = _noise(W, 0.1)
    series[-8:] += np.cumsum(RNG.standard_normal(8) * 2.0)
    scan = _scan(series)
    assert scan.strengths[0, PATTERN_TYPES.index("volatility_burst")] > 0.8
    assert scan.spans[0, PATTERN_TYPES.index("volatility_burst")].tolist() == [W - 9, W - 1]


def test_jump_out_of_a_range_is_a_breakout() -> None:
    series = np.tile([0.0, 1.0, 0.5, 0.8], W // 4)
    series[-1] = 6.0
    assert _strength(series, "breakout") > 0.5
    assert _strength(np.tile([0.0, 1.0], W // 2), "breakout") == 0.0


def test_speeding_up_is_acceleration() -> None:
    t = np.arange(W, dtype=float)
    assert _strength(0.02 * t**2, "acceleration") > 0.5
    assert _strength(t, "acceleration") < 0.1


def test_recent_standstill_is_a_plateau_with_a_trailing_span() -> None:
    series = _noise()
    series[-20:] = series[-21]
    scan = _scan(series)
    assert scan.strengths[0, PATTERN_TYPES.index("plateau")] == 1.0
    start, end = scan.spans[0, PATTERN_TYPES.index("plateau")].tolist()
    assert end == W - 1 and start <= W - 21


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=8, max_size=100))
def test_strengths_are_in_unit_interval_and_spans_are_ordered(values: list[float]) -> None:
    scan = _scan(np.asarray(values))
    assert np.all((scan.strengths >= 0) & (scan.strengths <= 1))
    assert np.all(scan.spans[..., 0] <= scan.spans[..., 1])
    assert np.all(scan.spans >= 0) and np.all(scan.spans <= W - 1)


def test_spatial_signature_is_the_normalised_top_k_counts_within_the_span() -> None:
    cumulative = np.zeros((6, 4, 1), dtype=np.float32)  # 5 steps, 4 neurons, 1 series
    per_step = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float32)
    cumulative[1:, :, 0] = np.cumsum(per_step, axis=0)
    rows = np.zeros(3, dtype=np.int64)
    # steps 2 and 3: neuron 1 twice, neuron 2 once; then the whole run; then an empty span.
    spans = np.array([[2, 4], [0, 5], [3, 3]], dtype=np.int64)
    sig = spatial_signatures(cumulative, rows, spans, top_k=3)
    assert sig.shape == (3, 3)
    np.testing.assert_allclose(sig[0], np.array([2, 1, 0]) / np.sqrt(5), rtol=1e-6)
    assert np.linalg.norm(sig[1]) == pytest.approx(1.0)
    np.testing.assert_array_equal(sig[2], np.zeros(3))
