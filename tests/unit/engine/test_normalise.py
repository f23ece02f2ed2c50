"""The normalised domain forgets level and scale, and never divides by zero."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qortex.engine.normalise import CLIP, last_windows, normalise_windows

series_st = st.lists(st.integers(-1000, 1000), min_size=8, max_size=80).map(lambda v: np.asarray(v, dtype=float))


@settings(max_examples=60, deadline=None)
@given(series_st, st.floats(0.01, 1000.0), st.floats(-1e4, 1e4))
def test_positive_scale_and_shift_leave_the_normalised_window_unchanged(
    series: np.ndarray, scale: float, shift: float
) -> None:
    raw, used, _ = last_windows([series], 32)
    raw2, used2, _ = last_windows([series * scale + shift], 32)
    z, const = normalise_windows(raw, used)
    z2, const2 = normalise_windows(raw2, used2)
    np.testing.assert_array_equal(const, const2)
    np.testing.assert_allclose(z, z2, atol=2**-15)


def test_constant_series_normalise_to_zeros_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw, used, _ = last_windows([np.full(40, 7.5), np.full(9, -2.0)], 32)
        z, constant = normalise_windows(raw, used)
    assert constant.tolist() == [True, True]
    assert not z.any()


def test_short_series_are_left_padded_with_no_movement() -> None:
    series = np.arange(10.0) ** 2
    raw, used, lengths = last_windows([series], 16)
    assert used.tolist() == [10] and lengths.tolist() == [10]
    np.testing.assert_array_equal(raw[0, :6], 0.0)
    z, _ = normalise_windows(raw, used)
    np.testing.assert_array_equal(z[0, :6], 0.0)
    assert (z[0, 6:] > 0).all()


def test_robust_scale_tames_a_single_outlier() -> None:
    series = np.cumsum(np.tile([1.0, -1.0], 20))
    series[-1] += 1000.0
    raw, used, _ = last_windows([series], 40)
    z, _ = normalise_windows(raw, used)
    assert z.dtype == np.float32
    assert abs(z[0, 0]) == 1.0  # the typical move is one robust unit
    assert z[0, -1] == CLIP  # the outlier is clipped, not allowed to dominate


def test_mostly_flat_series_falls_back_to_the_rms_difference() -> None:
    series = np.zeros(32)
    series[-1] = 1.0  # median absolute difference is 0
    raw, used, _ = last_windows([series], 32)
    z, constant = normalise_windows(raw, used)
    assert not constant[0]
    assert np.isfinite(z).all()
    assert z[0, -1] == pytest.approx(np.sqrt(31.0))  # one move of RMS 1/sqrt(31)


@pytest.mark.parametrize(
    "series",
    [
        [0.3] * 19 + [0.1 + 0.2],
        [1.0] * 63 + [1.0 + 2**-52],
        [-2.5e300] * 30 + [np.nextafter(-2.5e300, 0.0)],
        [1e-300] * 10 + [np.nextafter(1e-300, 1.0)] * 5 + [1e-300] * 5,
    ],
)
def test_moves_at_the_level_of_float_rounding_are_no_movement(series: list[float]) -> None:
    raw, used, _ = last_windows([np.asarray(series)], 64)
    z, constant = normalise_windows(raw, used)
    assert constant.tolist() == [True]
    assert not z.any()


def test_a_tiny_but_real_relative_move_still_counts() -> None:
    series = np.full(40, 1e6)
    series[-1] += 1e-6  # one part in 1e12: far above rounding, far below any real-data move
    raw, used, _ = last_windows([series], 32)
    z, constant = normalise_windows(raw, used)
    assert constant.tolist() == [False]
    assert z[0, -1] > 0
