"""Readout: L2-regularised logistic regression on standardised features, then calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from qortex.engine.config import CALIBRATIONS
from qortex.engine.rowwise import row_products

__all__ = ["Calibrator", "LogisticReadout", "fit_calibrator", "fit_logistic", "isotonic_fit"]

F64 = npt.NDArray[np.float64]
# Standardised features are clipped: a feature that barely varied in training (a neuron that
# almost never fired) must not dominate the logit when it does vary at prediction time.
CLIP_Z = 6.0


@dataclass(frozen=True)
class LogisticReadout:
    """Standardisation (mean, scale) and logistic coefficients over the standardised features."""

    mean: F64
    scale: F64
    coef: F64
    intercept: float

    def standardise(self, x: npt.NDArray[np.floating]) -> F64:
        """Returns (x - mean) / scale in float64."""
        return np.clip((np.asarray(x, dtype=np.float64) - self.mean) / self.scale, -CLIP_Z, CLIP_Z)

    def decision(self, x: npt.NDArray[np.floating]) -> F64:
        """Returns the logit for raw feature rows."""
        return np.asarray(row_products(self.standardise(x), self.coef) + self.intercept, dtype=np.float64)


def standardisation(x: F64) -> tuple[F64, F64]:
    """Returns per-feature mean and scale; constant features get scale 1 (they standardise to 0)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


def fit_logistic(x: F64, y: npt.NDArray[np.integer], *, l2: float | F64, max_iter: int) -> LogisticReadout:
    """Fits logistic regression with penalty sum(l2/2 * w^2) (intercept free) by L-BFGS.

    The loss is summed over samples, so l2 plays the role of 1/C in scikit-learn. `l2` is one
    penalty for every coefficient or one per feature column.
    """
    mean, scale = standardisation(x)
    xs = np.clip((x - mean) / scale, -CLIP_Z, CLIP_Z)
    target = np.asarray(y, dtype=np.float64)
    sign = 2.0 * target - 1.0
    n_features = xs.shape[1]
    penalty = np.broadcast_to(np.asarray(l2, dtype=np.float64), (n_features,))
    prior = np.clip(target.mean(), 1e-3, 1 - 1e-3)

    def loss_grad(params: F64) -> tuple[float, F64]:
        w, b = params[:n_features], params[n_features]
        margin = sign * (xs @ w + b)
        loss = -np.sum(log_expit(margin)) + 0.5 * float(penalty @ (w * w))
        r = -sign * expit(-margin)
        grad = np.empty_like(params)
        grad[:n_features] = xs.T @ r + penalty * w
        grad[n_features] = np.sum(r)
        return float(loss), grad

    start = np.zeros(n_features + 1)
    start[n_features] = np.log(prior / (1 - prior))
    result = minimize(loss_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return LogisticReadout(mean, scale, result.x[:n_features].copy(), float(result.x[n_features]))


@dataclass(frozen=True)
class Calibrator:
    """Maps a logit to a probability: Platt (sigmoid of a*s + b), isotonic (interpolated), or none."""

    kind: str
    params: F64  # platt: [a, b]; isotonic: knots x then y, concatenated; none: empty

    def __post_init__(self) -> None:
        # A stored artifact names its kind; an unknown one must not quietly become a plain sigmoid.
        if self.kind not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.kind!r}, expected one of {CALIBRATIONS}")
        size = self.params.size
        well_formed = {"platt": size == 2, "isotonic": size >= 2 and size % 2 == 0, "none": size == 0}
        if self.params.ndim != 1 or not well_formed[self.kind]:
            raise ValueError(f"{self.kind} calibration cannot have parameters of shape {self.params.shape}")
        if not np.isfinite(self.params).all():
            raise ValueError(f"{self.kind} calibration parameters must be finite")
        if self.kind == "isotonic":
            knots_x, knots_y = np.split(self.params, 2)
            if (np.diff(knots_x) < 0).any() or (knots_y < 0).any() or (knots_y > 1).any():
                raise ValueError("isotonic calibration needs ascending knots and probabilities within [0, 1]")

    def __call__(self, logit: F64) -> F64:
        if self.kind == "platt":
            return np.asarray(expit(self.params[0] * logit + self.params[1]), dtype=np.float64)
        if self.kind == "isotonic":
            half = self.params.shape[0] // 2
            return np.interp(logit, self.params[:half], self.params[half:])
        return np.asarray(expit(logit), dtype=np.float64)


def fit_calibrator(kind: str, logit: F64, y: npt.NDArray[np.integer]) -> Calibrator:
    """Fits the chosen calibration map on held-out logits and labels."""
    target = np.asarray(y, dtype=np.float64)
    if kind == "platt":
        return Calibrator("platt", _platt(logit, target))
    if kind == "isotonic":
        knots_x, knots_y = isotonic_fit(logit, target)
        # Keep isotonic output off exact 0 and 1: a held-out fold is small.
        knots_y = np.clip(knots_y, 0.01, 0.99)
        return Calibrator("isotonic", np.concatenate([knots_x, knots_y]))
    if kind == "none":
        return Calibrator("none", np.zeros(0))
    raise ValueError(f"unknown calibration {kind!r}")


def _platt(logit: F64, target: F64) -> F64:
    """Platt scaling with Platt's smoothed targets, fitted by L-BFGS."""
    n_pos = float(target.sum())
    n_neg = float(target.shape[0] - n_pos)
    t = np.where(target > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss_grad(params: F64) -> tuple[float, F64]:
        f = params[0] * logit + params[1]
        p = expit(f)
        loss = -np.sum(t * log_expit(f) + (1 - t) * log_expit(-f))
        r = p - t
        return float(loss), np.array([np.sum(r * logit), np.sum(r)])

    result = minimize(loss_grad, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    slope, intercept = result.x
    if slope < 0:
        # A map that falls with the logit would turn every factor's sign against the probability it
        # explains. The loss is convex, so the best map that does not fall has slope 0: the held-out
        # up rate for every series, as a flat isotonic map would give.
        rate = float(t.mean())
        slope, intercept = 0.0, float(np.log(rate / (1.0 - rate)))
    return np.array([slope, intercept], dtype=np.float64)


def isotonic_fit(x: F64, y: F64) -> tuple[F64, F64]:
    """Pool-adjacent-violators: non-decreasing fit of y on x, returned as interpolation knots.

    Knots sit at the mean score of each pooled block, so the interpolated map is continuous.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    sums_y: list[float] = []
    sums_x: list[float] = []
    weights: list[float] = []
    for xv, yv in zip(xs.tolist(), ys.tolist(), strict=True):
        sums_y.append(yv)
        sums_x.append(xv)
        weights.append(1.0)
        while len(weights) > 1 and (
            sums_y[-2] / weights[-2] >= sums_y[-1] / weights[-1] or sums_x[-2] / weights[-2] >= sums_x[-1] / weights[-1]
        ):
            wy, wx, ww = sums_y.pop(), sums_x.pop(), weights.pop()
            sums_y[-1] += wy
            sums_x[-1] += wx
            weights[-1] += ww
    w = np.asarray(weights)
    return np.asarray(sums_x) / w, np.asarray(sums_y) / w
