"""Readout features: momentum statistics, names and the factor each feature rolls up into."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qortex.engine.config import EngineConfig
from qortex.engine.patterns import PATTERN_TYPES, row_mean

__all__ = [
    "MOMENTUM_COLUMNS",
    "FeatureLayout",
    "build_layout",
    "momentum_features",
    "seasonal_features",
    "window_move_features",
]

F32 = npt.NDArray[np.float32]

MOMENTUM_LAGS = 10
_MOMENTUM = [
    *[(f"momentum lag {i}", "momentum last 5 steps" if i <= 5 else "momentum steps 6-10 back") for i in range(1, 11)],
    ("momentum mean 5", "momentum mean of last 5 steps"),
    ("momentum mean 20", "momentum mean of last 20 steps"),
    ("momentum mean window", "momentum mean of the window"),
    ("momentum volatility ratio", "momentum recent volatility ratio"),
    ("momentum range position", "momentum position in range"),
    ("momentum up share 10", "momentum share of up moves"),
]


MOMENTUM_COLUMNS = len(_MOMENTUM)


def momentum_features(z: F32) -> F32:
    """Returns (batch, 16): the last 10 normalised moves (newest first) and simple statistics."""
    batch, d = z.shape
    out = np.empty((batch, len(_MOMENTUM)), dtype=np.float32)
    lags = min(MOMENTUM_LAGS, d)
    out[:, :MOMENTUM_LAGS] = 0.0
    out[:, :lags] = z[:, d - lags :][:, ::-1]
    out[:, 10] = row_mean(z[:, -5:])
    out[:, 11] = row_mean(z[:, -20:])
    out[:, 12] = row_mean(z)
    recent = np.sqrt(row_mean(z[:, -10:] ** 2))
    overall = np.sqrt(row_mean(z**2))
    out[:, 13] = np.where(overall > 0, recent / np.maximum(overall, 1e-6), 1.0)
    level = np.cumsum(z, axis=1, dtype=np.float32)
    lo = np.minimum(level.min(axis=1), 0.0)
    hi = np.maximum(level.max(axis=1), 0.0)
    out[:, 14] = np.where(hi > lo, (level[:, -1] - lo) / np.maximum(hi - lo, 1e-6), 0.5)
    out[:, 15] = row_mean(z[:, -10:] > 0)
    return out


def window_move_lags(window: int) -> range:
    """Returns the lags of the window-moves group: every move older than the momentum lags."""
    return range(MOMENTUM_LAGS + 1, window)


def window_move_features(z: F32) -> F32:
    """Returns (batch, d - 10): the normalised moves 11 to d steps back (newest first)."""
    d = z.shape[1]
    older = z[:, : max(d - MOMENTUM_LAGS, 0)]
    return np.ascontiguousarray(older[:, ::-1])


# The seasonal detector looks for the period among lags 2 .. d - SEASONAL_MIN_PAIRS, so every
# autocorrelation it compares rests on at least that many pairs of moves.
SEASONAL_MIN_PAIRS = 8
SEASONAL_COLUMNS = [
    ("seasonal strength", "seasonal strength"),
    ("seasonal move one period back", "seasonal move one period back"),
    ("seasonal move one period back x strength", "seasonal move one period back"),
    ("seasonal autocorrelation forecast", "seasonal autocorrelation forecast"),
]


def seasonal_features(z: F32) -> F32:
    """Returns (batch, 4): the window's own period and what the move one period back says.

    The period p is the lag (2 or more) with the largest autocorrelation of the window's moves;
    the move p steps back is the analogue of the next move. The autocorrelation forecast weights
    every past move by the autocorrelation at its lag. Each window finds its own period, so one
    global readout serves quarterly, monthly and weekly series alike.
    """
    batch, d = z.shape
    out = np.zeros((batch, len(SEASONAL_COLUMNS)), dtype=np.float32)
    max_lag = d - SEASONAL_MIN_PAIRS
    if max_lag < 2:
        return out
    zc = z - row_mean(z)[:, None]
    energy = (zc * zc).sum(axis=1)
    safe = np.where(energy > 0, energy, 1.0)
    # shifted[:, k, j] = zc[:, j + k] (zero past the end): every lagged product in one pass. A
    # row-wise sum rather than a matmul, so a series gets the same bits alone or in a batch.
    padded = np.concatenate([zc, np.zeros((batch, max_lag + 1), dtype=np.float32)], axis=1)
    shifted = np.lib.stride_tricks.sliding_window_view(padded, d, axis=1)[:, : max_lag + 1]
    acf = (shifted * zc[:, None, :]).sum(axis=2) / safe[:, None]
    # lag k steps back is z[:, d - k]: the move that a period of k puts right before the next one.
    lagged = z[:, d - np.arange(1, max_lag + 1)]
    period = 2 + np.argmax(acf[:, 2:], axis=1)
    rows = np.arange(batch)
    strength = acf[rows, period]
    out[:, 0] = strength
    out[:, 1] = lagged[rows, period - 1]
    out[:, 2] = strength * out[:, 1]
    out[:, 3] = (acf[:, 1:] * lagged).sum(axis=1)
    return out


@dataclass(frozen=True)
class FeatureLayout:
    """Names, groups and factor labels of the readout features, in column order."""

    names: list[str]
    groups: list[str]
    factors: list[str]

    def factor_matrix(self) -> tuple[list[str], list[str], npt.NDArray[np.float64]]:
        """Returns factor labels, their groups and a (n_features, n_factors) 0/1 roll-up matrix."""
        labels = list(dict.fromkeys(self.factors))
        index = {label: i for i, label in enumerate(labels)}
        matrix = np.zeros((len(self.factors), len(labels)))
        matrix[np.arange(len(self.factors)), [index[f] for f in self.factors]] = 1.0
        groups = [self.groups[self.factors.index(label)] for label in labels]
        return labels, groups, matrix


def build_layout(config: EngineConfig) -> FeatureLayout:
    """Returns the feature layout that a configuration produces."""
    names: list[str] = []
    groups: list[str] = []
    factors: list[str] = []

    def add(name: str, group: str, factor: str) -> None:
        names.append(name)
        groups.append(group)
        factors.append(factor)

    for name, factor in _MOMENTUM:
        add(name, "momentum", factor)
    if config.use_window_moves:
        for lag in window_move_lags(config.window):
            add(f"momentum lag {lag}", "momentum", f"momentum {lag} steps back")
    if config.use_seasonal:
        for name, factor in SEASONAL_COLUMNS:
            add(name, "momentum", factor)
    if config.use_patterns:
        for p in PATTERN_TYPES:
            add(f"pattern {p}", "patterns", f"pattern {p}")
    if config.use_reservoir:
        n = config.n_neurons
        for kind, factor in (
            ("recent_count", "reservoir recent spike counts"),
            ("count", "reservoir total spike counts"),
            ("trace", "reservoir spike traces"),
            ("membrane", "reservoir membrane potentials"),
        ):
            for i in range(n):
                add(f"reservoir {kind}[{i}]", "reservoir", factor)
    if config.use_quantum:
        q = config.n_qubits
        for i in range(q):
            add(f"quantum <Z{i}>", "quantum", "quantum <Z> expectations")
        for i in range(q):
            for j in range(i + 1, q):
                add(f"quantum <Z{i}Z{j}>", "quantum", "quantum <ZZ> correlations")
    return FeatureLayout(names, groups, factors)
