"""Supervised samples from a series: sliding windows and their direction labels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qortex.engine.validation import check_horizon, is_integer, validate_series

__all__ = ["sliding_windows"]


def sliding_windows(
    series: npt.ArrayLike, window: int, horizon: int = 1
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
    """Returns windows X (n, window) and labels y (n,): 1 if series[t+h] > series[t], 0 if lower.

    t is the last index of a window, so a window never sees its own target; ties are dropped.
    No length cap applies here: training series may be longer than a prediction input.
    """
    if not is_integer(window) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    check_horizon(horizon)
    values = validate_series(series, max_length=None)
    n = values.shape[0] - window - horizon + 1
    if n <= 0:
        return np.empty((0, window), dtype=np.float64), np.empty(0, dtype=np.int8)
    x = np.lib.stride_tricks.sliding_window_view(values, window)[:n]
    last = values[window - 1 : window - 1 + n]
    target = values[window - 1 + horizon : window - 1 + horizon + n]
    keep = target != last
    return np.ascontiguousarray(x[keep]), (target[keep] > last[keep]).astype(np.int8)
