"""Eight pattern detectors over a batch of normalised windows, each with a strength and a span.

Detectors read the normalised differences z (batch, W - 1) and the level
L = [0, cumsum(z)] (batch, W), whose index j is the j-th value of the window. Strengths are
in [0, 1]; spans are inclusive window indices (start, end).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = ["PATTERN_TYPES", "PatternScan", "detect_patterns", "row_mean", "spatial_signatures"]

PATTERN_TYPES = (
    "trend_up",
    "trend_down",
    "mean_reversion",
    "oscillation",
    "volatility_burst",
    "breakout",
    "plateau",
    "acceleration",
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# A normalised move at most this big counts as standing still.
FLAT = 0.1
BURST_STEPS = 8
BREAKOUT_STEPS = 4
PLATEAU_STEPS = 12
EPS = np.float32(1e-6)
# The engine takes series of 8 values or more; a row is never scanned over fewer moves, so that
# every detector has a before and an after.
MIN_MOVES = 7


def row_mean(x: npt.NDArray[np.floating] | npt.NDArray[np.bool_], keepdims: bool = False) -> F32:
    """Row means without np.mean's Python-level overhead, which dominates for a single series."""
    total = x.sum(axis=1, dtype=np.float32, keepdims=keepdims)
    return np.asarray(total / np.float32(x.shape[1]), dtype=np.float32)


@dataclass(frozen=True)
class PatternScan:
    """Per-series pattern strengths (batch, 8), spans (batch, 8, 2) and oscillation periods."""

    strengths: F32
    spans: I64
    periods: F32  # (batch,) dominant oscillation period in steps


def detect_patterns(z: F32, valid: I64 | None = None) -> PatternScan:
    """Runs every detector on normalised differences (batch, W - 1).

    `valid` is the number of real (unpadded, trailing) differences per row; None means all.
    Detectors see only the real part of a row: the padding is not an observed lack of movement.
    """
    batch, d = z.shape
    moves = np.full(batch, d) if valid is None else np.clip(valid, min(d, MIN_MOVES), d)
    if (moves == d).all():
        scan = _scan(z)
    else:
        scan = PatternScan(
            np.empty((batch, len(PATTERN_TYPES)), dtype=np.float32),
            np.empty((batch, len(PATTERN_TYPES), 2), dtype=np.int64),
            np.empty(batch, dtype=np.float32),
        )
        # Rows with the same number of real moves are scanned together, as windows of that length.
        for n in np.unique(moves).tolist():
            rows = np.flatnonzero(moves == n)
            part = _scan(np.ascontiguousarray(z[rows, d - n :]))
            scan.strengths[rows] = part.strengths
            scan.spans[rows] = part.spans + (d - n)
            scan.periods[rows] = part.periods
    # The plateau alone runs into the padding, and only when no real move exceeds FLAT: such a
    # series never moves, which is a full plateau however short it is.
    plateau, run = _plateau(z)
    scan.strengths[:, 6] = plateau
    scan.spans[:, 6, 0] = d - run
    return scan


def _scan(z: F32) -> PatternScan:
    """Runs every detector but the plateau on rows whose differences are all real."""
    batch, d = z.shape
    w = d + 1
    strengths = np.zeros((batch, len(PATTERN_TYPES)), dtype=np.float32)
    spans = np.zeros((batch, len(PATTERN_TYPES), 2), dtype=np.int64)
    spans[:, :, 1] = w - 1
    level = np.concatenate([np.zeros((batch, 1), dtype=np.float32), np.cumsum(z, axis=1, dtype=np.float32)], 1)

    c1, c2 = _prefix_sums(z)
    up, down, trend_start = _trend(c1, c2, w)
    strengths[:, 0], strengths[:, 1] = up, down
    spans[:, 0, 0] = spans[:, 1, 0] = trend_start
    strengths[:, 2] = _mean_reversion(z)
    osc, period = _oscillation(z)
    strengths[:, 3] = osc
    spans[:, 3, 0] = np.maximum(w - 1 - np.ceil(2 * period).astype(np.int64), 0)
    strengths[:, 4], burst_steps = _volatility_burst(c2)
    spans[:, 4, 0] = w - 1 - burst_steps
    strengths[:, 5] = _breakout(z, level)
    spans[:, 5, 0] = max(w - 1 - BREAKOUT_STEPS, 0)
    strengths[:, 7], accel_start = _acceleration(c1, c2, w)
    spans[:, 7, 0] = accel_start
    return PatternScan(strengths, spans, period)


def _prefix_sums(z: F32) -> tuple[F64, F64]:
    """Returns running sums of z and z**2 with a leading zero column, (batch, d + 1) float64.

    Any trailing segment's mean and variance then cost two subtractions, instead of a pass each.
    """
    zero = np.zeros((z.shape[0], 1))
    c1 = np.concatenate([zero, np.cumsum(z, axis=1, dtype=np.float64)], axis=1)
    c2 = np.concatenate([zero, np.cumsum(np.square(z, dtype=np.float64), axis=1)], axis=1)
    return c1, c2


def _trend(c1: F64, c2: F64, w: int) -> tuple[F32, F32, I64]:
    """Drift t-statistic of the differences over the last 16, 32 or all steps; the largest wins."""
    d = c1.shape[1] - 1
    lengths = np.asarray(sorted({min(k, d) for k in (16, 32, d)}), dtype=np.int64)
    s1 = c1[:, d, None] - c1[:, d - lengths]
    s2 = c2[:, d, None] - c2[:, d - lengths]
    mean = s1 / lengths
    std = np.sqrt(np.maximum(s2 / lengths - mean * mean, 0.0))
    stats = mean * np.sqrt(lengths) / (std + EPS)  # (batch, n_lengths)
    best = np.argmax(np.abs(stats), axis=1)
    t = stats[np.arange(c1.shape[0]), best]
    start = w - 1 - lengths[best]
    up = np.tanh(np.maximum(t, 0) / 3.0).astype(np.float32)
    return up, np.tanh(np.maximum(-t, 0) / 3.0).astype(np.float32), start


def _mean_reversion(z: F32) -> F32:
    """Negative lag-1 autocorrelation of the differences: moves tend to undo the previous one."""
    c = z - row_mean(z, keepdims=True)
    var = np.sum(c * c, axis=1)
    ac1 = np.sum(c[:, 1:] * c[:, :-1], axis=1) / np.maximum(var, EPS)
    return np.asarray(np.clip(-2.0 * ac1, 0.0, 1.0), dtype=np.float32)


@lru_cache(maxsize=8)
def _spectrum_tables(d: int) -> tuple[F32, F64]:
    """Hann taper and rfft frequencies for d samples, cached (read-only) per length."""
    taper = np.hanning(d).astype(np.float32)
    freqs = np.asarray(np.fft.rfftfreq(d), dtype=np.float64)
    taper.setflags(write=False)
    freqs.setflags(write=False)
    return taper, freqs


def _oscillation(z: F32) -> tuple[F32, F32]:
    """Share of spectral power in the dominant period (2.5 steps to half the window)."""
    batch, d = z.shape
    taper, freqs = _spectrum_tables(d)
    c = (z - row_mean(z, keepdims=True)) * taper
    power = np.abs(np.fft.rfft(c, axis=1)) ** 2
    allowed = (freqs >= 2.0 / d) & (freqs <= 1.0 / 2.5)
    total = np.sum(power[:, 1:], axis=1)
    if not allowed.any():
        return np.zeros(batch, dtype=np.float32), np.zeros(batch, dtype=np.float32)
    # Neighbouring bins share a windowed peak, so the peak bin counts with its neighbours, but only
    # those inside the band: a step's power piles up below it, and that leakage is not a cycle.
    in_band = np.zeros((batch, len(freqs) + 1))
    in_band[:, :-1] = np.where(allowed[None, :], power, 0.0)
    k = np.argmax(np.where(allowed[None, :], power, -1.0), axis=1)
    rows = np.arange(batch)
    peak = in_band[rows, k - 1] + in_band[rows, k] + in_band[rows, k + 1]
    share = np.where(total > 0, peak / np.maximum(total, 1e-30), 0.0)
    strength = np.clip((share - 0.3) / 0.5, 0.0, 1.0)
    # Bins are 1/d apart, so the peak bin alone is up to 6 steps off a 24-step cycle in a 64-value
    # window (21 or 31.5). A Hann-tapered peak is close to Gaussian: a parabola through the log
    # magnitudes of the peak bin and its neighbours places it within a fraction of a bin.
    magnitude = np.log(np.sqrt(power[rows[:, None], k[:, None] + np.arange(-1, 2)]) + 1e-30)
    curvature = magnitude[:, 0] - 2.0 * magnitude[:, 1] + magnitude[:, 2]
    offset = np.where(curvature < 0, 0.5 * (magnitude[:, 0] - magnitude[:, 2]) / np.minimum(curvature, -1e-30), 0.0)
    frequency = (k + np.clip(offset, -0.5, 0.5)) / d
    period = np.where(total > 0, np.clip(1.0 / frequency, 2.5, d / 2.0), 0.0)
    return strength.astype(np.float32), period.astype(np.float32)


def _volatility_burst(c2: F64) -> tuple[F32, int]:
    """RMS of the last 8 moves against the RMS of the moves before them; 4x is full strength.

    A row of fewer than 16 moves compares its last half instead; the number of recent moves
    compared is returned with the strengths, so that the span covers exactly those.
    """
    d = c2.shape[1] - 1
    k = min(BURST_STEPS, d // 2)
    recent = np.sqrt((c2[:, d] - c2[:, d - k]) / k)
    before = np.sqrt(c2[:, d - k] / (d - k))
    ratio = np.where(before > 0, recent / np.maximum(before, EPS), np.where(recent > 0, 4.0, 1.0))
    strength = np.clip(np.log(np.maximum(ratio, 1e-6)) / np.log(4.0), 0.0, 1.0)
    return np.asarray(strength, dtype=np.float32), k


def _breakout(z: F32, level: F32) -> F32:
    """Last value beyond the range of everything before the last 4 steps, in RMS-move units."""
    w = level.shape[1]
    prior = level[:, : w - BREAKOUT_STEPS]
    last = level[:, -1]
    excess = np.maximum(np.maximum(last - prior.max(axis=1), prior.min(axis=1) - last), 0.0)
    rms = np.sqrt(row_mean(z * z))
    return np.asarray(np.tanh(excess / (2.0 * rms + EPS)), dtype=np.float32)


def _plateau(z: F32) -> tuple[F32, I64]:
    """Trailing run of near-zero moves; 12 or more steps is full strength."""
    d = z.shape[1]
    moving = np.abs(z) > FLAT
    any_moving = moving.any(axis=1)
    last_move = d - 1 - np.argmax(moving[:, ::-1], axis=1)
    run = np.where(any_moving, d - 1 - last_move, d).astype(np.int64)
    return np.minimum(run / PLATEAU_STEPS, 1.0).astype(np.float32), run


def _acceleration(c1: F64, c2: F64, w: int) -> tuple[F32, I64]:
    """Change of drift between the two halves of the last 32 moves, as a t-statistic."""
    d = c1.shape[1] - 1
    k = min(32, d) // 2
    first = (c1[:, d - k] - c1[:, d - 2 * k]) / k
    second = (c1[:, d] - c1[:, d - k]) / k
    mean = (c1[:, d] - c1[:, d - 2 * k]) / (2 * k)
    spread = np.sqrt(np.maximum((c2[:, d] - c2[:, d - 2 * k]) / (2 * k) - mean * mean, 0.0))
    t = (second - first) * np.sqrt(k / 2) / (spread + EPS)
    start = np.full(c1.shape[0], w - 1 - 2 * k, dtype=np.int64)
    return np.tanh(np.abs(t) / 3.0).astype(np.float32), start


def spatial_signatures(cumulative: F32, rows: I64, spans: I64, top_k: int) -> F32:
    """Returns (m, top_k): for span m of series rows[m], the largest per-neuron spike counts, L2-normalised.

    `cumulative` is (T + 1, N, batch) cumulative spike counts, where reservoir step t consumes the
    move into window value t + 1, so window span [a, b] covers cumulative[b] - cumulative[a]. Only the
    spans asked for are computed: the result carries signatures of the patterns that were found.
    """
    steps, n = cumulative.shape[0] - 1, cumulative.shape[1]
    neurons = np.arange(n)[None, :]
    end = np.clip(spans[:, 1], 0, steps)[:, None]
    start = np.clip(spans[:, 0], 0, steps)[:, None]
    counts = cumulative[end, neurons, rows[:, None]] - cumulative[start, neurons, rows[:, None]]  # (m, N)
    k = min(top_k, n)
    # Partition first: only the k largest counts of each span need sorting.
    top = np.partition(counts, n - k, axis=1)[:, n - k :]
    top = -np.sort(-top, axis=1)
    norm = np.sqrt(np.sum(top * top, axis=1, keepdims=True))
    return np.where(norm > 0, top / np.maximum(norm, EPS), 0.0).astype(np.float32)
