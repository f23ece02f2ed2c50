"""Scale- and shift-free representation of a window: robustly scaled differences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["CLIP", "QUANTUM_STEP", "last_windows", "normalise_windows"]

# Normalised differences beyond this many robust scales are outliers; clipping keeps one spike
# from saturating every later stage.
CLIP = 8.0
# Values are snapped to a dyadic grid so that rescaling a series (which perturbs its float64
# differences in the last bits) yields bit-identical inputs to every later stage.
QUANTUM_STEP = 2.0**-16
# When the median absolute difference is below this fraction of the root-mean-square difference
# (a series that mostly stands still, median ~0), the scale falls back to the RMS difference.
# Both are relative, so the rule itself is scale-free.
MEDIAN_FLOOR = 1e-3
# Moves no larger than this many float64 ULPs of the window's largest magnitude are rounding
# (0.1 + 0.2 against 0.3), not movement; real data move by many orders of magnitude more.
ROUNDING_ULPS = 8


def last_windows(
    series_list: Sequence[npt.NDArray[np.float64]], window: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Returns the last `window` values of each series, left-padded by repeating the first value.

    Padding by repetition means zero differences, i.e. "no movement" in the normalised domain.
    Also returns the number of real values used and each series' length.
    """
    batch = len(series_list)
    raw = np.empty((batch, window), dtype=np.float64)
    used = np.empty(batch, dtype=np.int64)
    lengths = np.empty(batch, dtype=np.int64)
    for i, s in enumerate(series_list):
        n = s.shape[0]
        lengths[i] = n
        if n >= window:
            raw[i] = s[n - window :]
            used[i] = window
        else:
            raw[i, window - n :] = s
            raw[i, : window - n] = s[0]
            used[i] = n
    return raw, used, lengths


def normalise_windows(
    raw: npt.NDArray[np.float64], used: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Returns differences divided by a robust per-row scale, float32 (batch, window - 1).

    The scale is the median absolute difference over the real (unpadded) part, or the RMS
    difference where the median is ~0. A row without any movement beyond float rounding is all
    zeros, flagged constant.
    """
    # Dividing by the largest magnitude first keeps differences of huge values from overflowing
    # and squares of tiny ones from underflowing; the ratio below is unaffected by it.
    magnitude = np.max(np.abs(raw), axis=1, keepdims=True)
    diffs = np.diff(raw / np.where(magnitude > 0, magnitude, 1.0), axis=1)
    absd = np.abs(diffs)
    if used is None or bool((used == raw.shape[1]).all()):
        median = np.median(absd, axis=1)
        rms = np.sqrt(np.mean(diffs * diffs, axis=1))
    else:
        valid = np.arange(diffs.shape[1])[None, :] >= (raw.shape[1] - used)[:, None]
        masked = np.where(valid, absd, np.nan)
        median = np.nanmedian(masked, axis=1)
        rms = np.sqrt(np.nanmean(masked * masked, axis=1))
    # The rows are divided by their largest magnitude, so one ULP of it is machine epsilon here.
    constant = absd.max(axis=1) <= ROUNDING_ULPS * np.finfo(np.float64).eps
    scale = np.where(median > MEDIAN_FLOOR * rms, median, rms)
    scale[constant] = 1.0
    z = diffs / scale[:, None]
    np.clip(z, -CLIP, CLIP, out=z)
    z = np.round(z / QUANTUM_STEP) * QUANTUM_STEP
    return z.astype(np.float32), constant
