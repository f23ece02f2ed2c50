"""Scores for probabilistic direction forecasts.

Every function takes ``y_true`` (1 = the series went up, 0 = down) and ``p_up`` (the forecast
probability that it goes up) and returns a float. A forecast of exactly 0.5 states no direction;
accuracy-type scores give it half credit, which is what a fair coin would earn in expectation.
Scores that are undefined for the given input (AUC with a single class, accuracy at a coverage no
forecast reaches) are ``nan`` rather than an exception, so one degenerate fold cannot sink a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

FloatArray = npt.NDArray[np.float64]

LOG_LOSS_EPS = 1e-15
ECE_BINS = 10
ECE_FLOOR_DRAWS = 2000
ECE_FLOOR_CHUNK_VALUES = 1_000_000
COVERAGE_THRESHOLD = 0.6


def _as_pair(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate and convert labels and probabilities to aligned float arrays."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(p_up, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but p_up has {p.size}")
    if y.size == 0:
        raise ValueError("cannot score an empty set of forecasts")
    if not np.all((y == 0.0) | (y == 1.0)):
        raise ValueError("y_true must contain only 0 and 1")
    if not np.all(np.isfinite(p)) or np.any(p < 0.0) or np.any(p > 1.0):
        raise ValueError("p_up must be finite probabilities in [0, 1]")
    return y, p


def _credit(y: FloatArray, p: FloatArray) -> FloatArray:
    """Per-forecast credit: 1 when the stated direction is right, 0 when wrong, 0.5 for p == 0.5."""
    stated = np.sign(p - 0.5)
    actual = np.where(y == 1.0, 1.0, -1.0)
    return np.where(stated == 0.0, 0.5, (stated == actual).astype(np.float64))


def directional_accuracy(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> float:
    """Fraction of forecasts whose stated direction (p > 0.5 up, p < 0.5 down) was right."""
    y, p = _as_pair(y_true, p_up)
    return float(np.mean(_credit(y, p)))


def balanced_accuracy(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> float:
    """Mean of the accuracy on up moves and the accuracy on down moves (nan if one class is absent)."""
    y, p = _as_pair(y_true, p_up)
    credit = _credit(y, p)
    up, down = y == 1.0, y == 0.0
    if not up.any() or not down.any():
        return math.nan
    return float(0.5 * (credit[up].mean() + credit[down].mean()))


def brier_score(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> float:
    """Mean squared difference between the probability of up and the outcome."""
    y, p = _as_pair(y_true, p_up)
    return float(np.mean((p - y) ** 2))


def log_loss(y_true: npt.ArrayLike, p_up: npt.ArrayLike, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood, with probabilities clipped to [eps, 1 - eps]."""
    y, p = _as_pair(y_true, p_up)
    q = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def expected_calibration_error(y_true: npt.ArrayLike, p_up: npt.ArrayLike, n_bins: int = ECE_BINS) -> float:
    """ECE over the probability of up: sum over equal-width bins of (bin share) * |up-rate - mean p|.

    Bins are ``[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]`` for ten bins (the last one closed).
    """
    y, p = _as_pair(y_true, p_up)
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        member = bins == b
        total += member.mean() * abs(float(y[member].mean()) - float(p[member].mean()))
    return float(total)


def ece_floor(p_up: npt.ArrayLike, n_bins: int = ECE_BINS, draws: int = ECE_FLOOR_DRAWS, seed: int = 0) -> float:
    """The ECE a perfectly calibrated forecaster giving these same probabilities would score, on average.

    ECE is biased upwards on small samples: even when every outcome is drawn with exactly the stated
    probability, the up-rate within a bin strays from its mean probability. Outcomes are drawn
    ``draws`` times as Bernoulli(p) and scored with the same bins, so an ECE close to this value is
    as good as calibration can be shown to be with this many forecasts. Seeded: the same input gives
    the same value.
    """
    p = np.asarray(p_up, dtype=np.float64).ravel()
    _as_pair(np.zeros_like(p), p)  # the same checks as every other score
    if draws < 1 or n_bins < 1:
        raise ValueError("draws and n_bins must be at least 1")
    rng = np.random.default_rng(seed)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    members = [(bins == b) for b in np.unique(bins)]
    total = 0.0
    # Draws in chunks, so memory stays bounded however many forecasts there are.
    chunk = max(1, ECE_FLOOR_CHUNK_VALUES // p.size)
    for start in range(0, draws, chunk):
        outcomes = rng.random((min(chunk, draws - start), p.size)) < p
        for member in members:
            total += member.mean() * float(np.abs(outcomes[:, member].mean(axis=1) - p[member].mean()).sum())
    return total / draws


def roc_auc(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> float:
    """Area under the ROC curve from the Mann-Whitney statistic; tied scores get average ranks."""
    y, p = _as_pair(y_true, p_up)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(p, method="average")
    rank_sum = float(ranks[y == 1.0].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


@dataclass(frozen=True)
class CoverageScore:
    """Accuracy of the forecasts confident enough to act on, and the share of forecasts that are."""

    accuracy: float
    coverage: float


def accuracy_at_coverage(
    y_true: npt.ArrayLike, p_up: npt.ArrayLike, threshold: float = COVERAGE_THRESHOLD
) -> CoverageScore:
    """Directional accuracy over forecasts with confidence max(p, 1 - p) >= threshold."""
    y, p = _as_pair(y_true, p_up)
    confident = np.maximum(p, 1.0 - p) >= threshold
    coverage = float(confident.mean())
    if not confident.any():
        return CoverageScore(accuracy=math.nan, coverage=coverage)
    return CoverageScore(accuracy=float(np.mean(_credit(y[confident], p[confident]))), coverage=coverage)


METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "brier",
    "log_loss",
    "ece",
    "ece_floor",
    "auc",
    "accuracy_at_0.6",
    "coverage_at_0.6",
)


def score_all(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> dict[str, float]:
    """Every metric of this module under the names in ``METRIC_NAMES``."""
    coverage = accuracy_at_coverage(y_true, p_up, COVERAGE_THRESHOLD)
    return {
        "accuracy": directional_accuracy(y_true, p_up),
        "balanced_accuracy": balanced_accuracy(y_true, p_up),
        "brier": brier_score(y_true, p_up),
        "log_loss": log_loss(y_true, p_up),
        "ece": expected_calibration_error(y_true, p_up),
        "ece_floor": ece_floor(p_up),
        "auc": roc_auc(y_true, p_up),
        "accuracy_at_0.6": coverage.accuracy,
        "coverage_at_0.6": coverage.coverage,
    }
