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


@pytest.mark.parametrize("period", [5.0, 7.0, 12.0, 18.0, 24.0, 30.0])
@pytest.mark.parametrize("length", [W, 200])
def test_a_cycle_reports_its_own_period_not_the_nearest_spectral_bin(period: float, length: int) -> None:
    """The window's spectral bins are 63/k steps apart in period (21, 31.5): the peak is placed between them."""
    for phase in (0.0, 1.0, 2.0):
        series = np.sin(2 * np.pi * np.arange(length) / period + phase)
        assert _scan(series).periods[0] == pytest.approx(period, abs=1.0)


def test_a_short_cycle_reports_its_period_in_steps_of_the_series() -> None:
    series = np.sin(2 * np.pi * np.arange(40) / 16.0) + RNG.standard_normal(40) * 0.05
    assert _scan(series).periods[0] == pytest.approx(16.0, abs=1.0)


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


def test_a_burst_in_a_short_series_spans_the_moves_it_was_measured_on() -> None:
    """With 11 moves the detector compares the last 5 with the 6 before them, so the span is the last 5 moves."""
    calm = np.cumsum(RNG.standard_normal(8) * 0.05)
    series = np.r_[calm, calm[-1] + np.cumsum([3.0, -4.0, 5.0, -3.0])]
    scan = _scan(series)
    assert scan.strengths[0, PATTERN_TYPES.index("volatility_burst")] > 0.8
    assert scan.spans[0, PATTERN_TYPES.index("volatility_burst")].tolist() == [W - 6, W - 1]


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


@pytest.mark.parametrize(
    "series",
    [
        np.r_[np.zeros(W - 1), 1.0],
        np.r_[np.arange(0.0, 5.0 * (W - 1), 5.0), 5.0 * W + 10.0],
        np.r_[np.zeros(40), np.ones(24)],
    ],
    ids=["flat then a jump", "steady climb then a jump", "step in the middle"],
)
def test_a_step_is_not_an_oscillation(series: np.ndarray) -> None:
    """A step leaves its power below the lowest period the detector reports; that leakage is not a cycle."""
    assert _strength(series, "oscillation") == 0.0


def test_a_cycle_of_half_the_window_is_still_an_oscillation() -> None:
    series = np.sin(2 * np.pi * np.arange(W) / 30.0)
    scan = _scan(series)
    assert scan.strengths[0, PATTERN_TYPES.index("oscillation")] > 0.5
    assert scan.periods[0] == pytest.approx(30.0, rel=0.1)


def test_a_short_steady_rise_is_a_trend_not_an_oscillation_in_its_padding() -> None:
    scan = _scan(np.arange(1.0, 10.0))
    strengths = dict(zip(PATTERN_TYPES, scan.strengths[0].tolist(), strict=True))
    assert strengths["trend_up"] > 0.8
    assert strengths["oscillation"] == 0.0
    assert strengths["acceleration"] == 0.0
    assert strengths["volatility_burst"] == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=8, max_size=W - 1))
def test_a_padded_series_is_scanned_as_a_window_of_its_own_length(values: list[float]) -> None:
    series = np.cumsum(values)
    padded = _scan(series)
    raw, used, _ = last_windows([series], series.size)
    z, _ = normalise_windows(raw, used)
    own = detect_patterns(z)
    shift = W - series.size
    real = [i for i, name in enumerate(PATTERN_TYPES) if name != "plateau"]  # plateau: see below
    np.testing.assert_array_equal(padded.strengths[0, real], own.strengths[0, real])
    np.testing.assert_array_equal(padded.spans[0, real], own.spans[0, real] + shift)
    assert padded.periods[0] == own.periods[0] <= (series.size - 1) / 2


def test_a_short_series_that_never_moves_is_still_a_full_plateau() -> None:
    scan = _scan(np.full(9, 2.0))
    assert scan.strengths[0, PATTERN_TYPES.index("plateau")] == 1.0
    assert scan.spans[0, PATTERN_TYPES.index("plateau")].tolist() == [0, W - 1]


def test_a_mixed_batch_scans_each_row_as_it_would_alone() -> None:
    batch = [_noise(), np.arange(1.0, 10.0), _noise(20), np.sin(np.arange(40.0)), _noise(20)]
    raw, used, _ = last_windows(batch, W)
    z, _ = normalise_windows(raw, used)
    together = detect_patterns(z, used - 1)
    for i in range(len(batch)):
        alone = detect_patterns(z[i : i + 1], used[i : i + 1] - 1)
        np.testing.assert_array_equal(together.strengths[i], alone.strengths[0])
        np.testing.assert_array_equal(together.spans[i], alone.spans[0])
        assert together.periods[i] == alone.periods[0]
