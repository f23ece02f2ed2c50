"""Reference forecasters the engine is measured against.

Every model here follows one small contract, :class:`DirectionModel`:

- ``fit(series, horizon)`` learns from whole training series (each a prefix of a real series that
  ends at or before the first forecast origin of the test period);
- ``predict_proba(histories)`` returns, for each history (all values up to and including a forecast
  origin ``t``), the probability that the value at ``t + horizon`` is above the value at ``t``.

A model's ``scope`` says how walk-forward evaluation trains it: ``"global"`` models are fitted once
on the training part of every series, ``"series"`` models once per series on that series alone.

The baselines:

- ``majority``: the training up-rate of the series (Laplace-smoothed), whatever the history.
- ``persistence``: the direction of the last ``horizon``-step move continues; its probability is the
  smoothed accuracy that rule had on the training part of the series, so it is calibrated by
  construction (below 0.5 it becomes mean reversion).
- ``ets``: the sign of an AutoETS forecast (statsforecast). The model is selected and estimated once
  per series and fold on the training part; at each origin the fitted model is run forward over the
  history up to the origin (no re-estimation, O(length) and about 0.1 ms), and the forecast change
  over ``horizon`` steps, divided by the training standard deviation of ``horizon``-step changes,
  is mapped to a probability by a logistic regression fitted on training origins.
- ``logistic_lags``: the engine's own readout on its momentum features (the last 10 normalised
  moves and summaries, the older moves of the window and the seasonal features), with the
  reservoir, quantum and pattern stages switched off (built in :mod:`qortex.engine.evaluation`).
- ``window_logistic``: L2 logistic regression on *every* normalised move of the window (the engine's
  own normalisation), fitted globally, without the engine's summaries or seasonal features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from qortex.engine import sliding_windows
from qortex.engine.normalise import last_windows, normalise_windows

FloatArray = npt.NDArray[np.float64]
Scope = Literal["global", "series"]


class DirectionModel(Protocol):
    """A forecaster of the probability that a series is higher ``horizon`` steps after an origin."""

    name: str
    scope: Scope

    def fit(self, series: Sequence[FloatArray], horizon: int) -> DirectionModel:
        """Learn from training series; returns self."""
        ...

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """Probability of up for each history (values up to and including the forecast origin)."""
        ...


def direction_pairs(series: FloatArray, horizon: int, first_origin: int = 0) -> tuple[FloatArray, FloatArray]:
    """Origins ``t >= first_origin`` with a move ``series[t + h] != series[t]`` and their labels.

    Returns ``(origins, labels)`` with ``labels = 1.0`` for up and ``0.0`` for down; ties are dropped,
    as in :func:`qortex.engine.sliding_windows`.
    """
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    x = np.asarray(series, dtype=np.float64)
    origins = np.arange(max(first_origin, 0), x.size - horizon)
    change = x[origins + horizon] - x[origins]
    keep = change != 0.0
    return origins[keep].astype(np.float64), (change[keep] > 0.0).astype(np.float64)


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def fit_logistic(features: FloatArray, labels: FloatArray, l2: float = 1e-2, iters: int = 50) -> FloatArray:
    """L2-regularised logistic regression by Newton's method; returns ``[bias, *weights]``.

    The bias is not penalised. Used for the small calibration mappings of the baselines.
    """
    x = np.column_stack([np.ones(features.shape[0]), np.asarray(features, dtype=np.float64)])
    y = np.asarray(labels, dtype=np.float64)
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return w


def _check_histories(histories: Sequence[FloatArray]) -> list[FloatArray]:
    out = [np.asarray(h, dtype=np.float64) for h in histories]
    for h in out:
        if h.ndim != 1 or h.size < 2 or not np.all(np.isfinite(h)):
            raise ValueError("each history must be a 1-D array of at least 2 finite values")
    return out


class MajorityClass:
    """Always the training up-rate of the series."""

    name = "majority"
    scope: Scope = "series"

    def __init__(self) -> None:
        self.p_up_ = 0.5

    def fit(self, series: Sequence[FloatArray], horizon: int) -> MajorityClass:
        """Count up and down moves over ``horizon`` steps in the training series."""
        ups = downs = 0
        for s in series:
            _, labels = direction_pairs(s, horizon)
            ups += int(labels.sum())
            downs += int(labels.size - labels.sum())
        self.p_up_ = (ups + 1.0) / (ups + downs + 2.0)
        return self

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """The same up-rate for every history."""
        return np.full(len(_check_histories(histories)), self.p_up_)


class Persistence:
    """The last ``horizon``-step direction continues, with its training accuracy as confidence."""

    name = "persistence"
    scope: Scope = "series"

    def __init__(self) -> None:
        self.horizon_ = 1
        self.accuracy_ = 0.5
        self.p_up_ = 0.5

    def fit(self, series: Sequence[FloatArray], horizon: int) -> Persistence:
        """Measure how often the last move's direction repeated in the training series."""
        self.horizon_ = horizon
        agree = total = ups = moves = 0
        for s in series:
            origins, labels = direction_pairs(s, horizon, first_origin=horizon)
            ups += int(labels.sum())
            moves += labels.size
            idx = origins.astype(np.int64)
            last = np.sign(s[idx] - s[idx - horizon])
            stated = last != 0.0
            agree += int(np.sum((last[stated] > 0.0) == (labels[stated] == 1.0)))
            total += int(stated.sum())
        self.accuracy_ = (agree + 1.0) / (total + 2.0)
        self.p_up_ = (ups + 1.0) / (moves + 2.0)
        return self

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """``accuracy`` after an up move, ``1 - accuracy`` after a down move, the up-rate after none."""
        out = np.empty(len(histories))
        for i, h in enumerate(_check_histories(histories)):
            if h.size <= self.horizon_:
                out[i] = self.p_up_
                continue
            last = h[-1] - h[-1 - self.horizon_]
            out[i] = self.accuracy_ if last > 0 else (1.0 - self.accuracy_) if last < 0 else self.p_up_
        return out


class ETSDirection:
    """Direction of an AutoETS forecast, mapped to a probability calibrated on training origins."""

    name = "ets"
    scope: Scope = "series"

    def __init__(self, season_length: int = 1, max_calibration_origins: int = 400, min_history: int = 16):
        self.season_length = season_length
        self.max_calibration_origins = max_calibration_origins
        self.min_history = min_history
        self.horizon_ = 1
        self.model_: Any = None
        self.scale_ = 1.0
        self.coef_: FloatArray = np.zeros(2)
        self.p_up_ = 0.5

    def _change(self, history: FloatArray) -> float:
        """Forecast change over the horizon, in units of the training spread of such changes."""
        forecast = self.model_.forward(y=history, h=self.horizon_)["mean"]
        return float((forecast[-1] - history[-1]) / self.scale_)

    def fit(self, series: Sequence[FloatArray], horizon: int) -> ETSDirection:
        """Select and estimate AutoETS on one training series, then calibrate its forecasts."""
        if len(series) != 1:
            raise ValueError("the ETS baseline is fitted per series: pass exactly one series")
        try:
            from statsforecast.models import AutoETS
        except ImportError as exc:
            raise RuntimeError("the ETS baseline needs statsforecast: pip install 'qortex[eval]'") from exc
        s = np.asarray(series[0], dtype=np.float64)
        self.horizon_ = horizon
        _, labels = direction_pairs(s, horizon)
        self.p_up_ = (labels.sum() + 1.0) / (labels.size + 2.0)
        moves = s[horizon:] - s[:-horizon]
        self.scale_ = float(np.std(moves)) or 1.0
        # Seasonal ETS is fitted only on three full seasons of data or more; statsforecast caps seasons at 24.
        seasonal = 2 <= self.season_length <= 24 and s.size >= 3 * self.season_length
        season = self.season_length if seasonal else 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.model_ = AutoETS(season_length=season).fit(s)
            except Exception:
                self.model_ = None
                return self
            origins, labels = direction_pairs(s, horizon, first_origin=max(self.min_history, 2 * season) - 1)
            keep = self.max_calibration_origins
            origins, labels = origins[-keep:], labels[-keep:]
            if labels.size < 10 or labels.min() == labels.max():
                self.coef_ = np.array([math.log(self.p_up_ / (1.0 - self.p_up_)), 0.0])
                return self
            z = np.array([self._change(s[: int(t) + 1]) for t in origins])
        self.coef_ = fit_logistic(z[:, None], labels, l2=1.0)
        return self

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """Run the fitted model forward over each history and map its forecast change to p(up)."""
        hs = _check_histories(histories)
        if self.model_ is None:
            return np.full(len(hs), self.p_up_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z = np.array([self._change(h) for h in hs])
        z = np.where(np.isfinite(z), z, 0.0)
        return _sigmoid(self.coef_[0] + self.coef_[1] * z)


class WindowLogistic:
    """Logistic regression on all ``window - 1`` normalised moves of the window, fitted globally."""

    name = "window_logistic"
    scope: Scope = "global"

    def __init__(self, window: int = 64, l2: float = 10.0) -> None:
        self.window = window
        self.l2 = l2
        self.mean_: FloatArray = np.zeros(0)
        self.scale_: FloatArray = np.ones(0)
        self.coef_: FloatArray = np.zeros(0)

    def _features(self, raw: FloatArray) -> FloatArray:
        z, _ = normalise_windows(raw)
        return np.asarray(z, dtype=np.float64)

    def fit(self, series: Sequence[FloatArray], horizon: int) -> WindowLogistic:
        """Fit on the sliding windows of every training series."""
        xs, ys = [], []
        for s in series:
            x, y = sliding_windows(s, self.window, horizon)
            if y.size:
                xs.append(x)
                ys.append(y)
        if not xs:
            raise ValueError("no training window: every series is shorter than window + horizon")
        features = self._features(np.concatenate(xs))
        labels = np.concatenate(ys).astype(np.float64)
        self.mean_ = features.mean(axis=0)
        self.scale_ = np.where(features.std(axis=0) > 1e-8, features.std(axis=0), 1.0)
        self.coef_ = fit_logistic((features - self.mean_) / self.scale_, labels, l2=self.l2)
        return self

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """Probability of up from the last ``window`` values of each history."""
        raw, _, _ = last_windows(_check_histories(histories), self.window)
        features = (self._features(raw) - self.mean_) / self.scale_
        return _sigmoid(self.coef_[0] + features @ self.coef_[1:])
