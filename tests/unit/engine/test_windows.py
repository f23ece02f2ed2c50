"""sliding_windows builds honest supervised samples: no window sees its own target."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qortex.engine import sliding_windows


def test_labels_compare_target_with_last_value_of_the_window() -> None:
    series = np.array([0.0, 1, 2, 1, 1, 3, 2, 2, 5])
    x, y = sliding_windows(series, window=3, horizon=1)
    # t = 2..7 ; targets 1, 1, 3, 2, 2, 5 against 2, 1, 1, 3, 2, 2 -> down, tie, up, down, tie, up
    np.testing.assert_array_equal(y, [0, 1, 0, 1])
    np.testing.assert_array_equal(x[0], [0, 1, 2])
    np.testing.assert_array_equal(x[1], [2, 1, 1])
    assert x.dtype == np.float64 and y.dtype == np.int8


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=8, max_size=60),
    st.integers(2, 10),
    st.integers(1, 4),
)
def test_a_window_never_contains_its_target(steps: list[int], window: int, horizon: int) -> None:
    series = np.cumsum(np.asarray(steps, dtype=float)) + np.arange(len(steps)) * 1e-3
    x, y = sliding_windows(series, window, horizon)
    assert x.shape == (y.shape[0], window)
    for row, label in zip(x, y, strict=True):
        start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(series, window) == row, 1))[0])
        t = start + window - 1
        assert t + horizon < len(series)
        assert label == int(series[t + horizon] > series[t])
        assert series[t + horizon] != series[t]


def test_too_short_series_gives_no_samples() -> None:
    x, y = sliding_windows(np.arange(10.0), window=10, horizon=1)
    assert x.shape == (0, 10) and y.shape == (0,)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        sliding_windows(np.arange(20.0), 5, 0)
    with pytest.raises(ValueError, match="window"):
        sliding_windows(np.arange(20.0), 1, 1)


@pytest.mark.parametrize(
    ("window", "horizon", "message"),
    [
        (4, True, "horizon must be an integer, got True"),
        (4, 1.5, "horizon must be an integer, got 1.5"),
        (4, 0, "horizon must be >= 1, got 0"),
        (4.0, 1, "window must be an integer >= 2, got 4.0"),
        (True, 1, "window must be an integer >= 2, got True"),
        (1, 1, "window must be an integer >= 2, got 1"),
    ],
)
def test_window_and_horizon_must_be_integers(window: object, horizon: object, message: str) -> None:
    """True is not a horizon of 1, and 1.5 is refused as a ValueError, not a TypeError from slicing."""
    with pytest.raises(ValueError, match=re.escape(message)):
        sliding_windows(np.arange(20.0), window, horizon)  # type: ignore[arg-type]
