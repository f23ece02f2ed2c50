"""Logistic readout and calibration, checked against closed-form and brute-force answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from qortex.engine.readout import Calibrator, fit_calibrator, fit_logistic, isotonic_fit


def _logistic_data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    w = np.array([1.5, -0.5, 0.0])
    y = (rng.random(n) < expit((x - x.mean(0)) / x.std(0) @ w + 0.3)).astype(np.int8)
    return x, y, w


def test_logistic_regression_recovers_the_generating_coefficients() -> None:
    x, y, w = _logistic_data()
    model = fit_logistic(x, y, l2=1e-6, max_iter=500)
    np.testing.assert_allclose(model.coef, w, atol=0.12)
    assert model.intercept == pytest.approx(0.3, abs=0.12)


def test_l2_shrinks_the_coefficients() -> None:
    x, y, _ = _logistic_data(400)
    loose = fit_logistic(x, y, l2=1e-6, max_iter=500)
    tight = fit_logistic(x, y, l2=1000.0, max_iter=500)
    assert np.linalg.norm(tight.coef) < 0.5 * np.linalg.norm(loose.coef)


def test_gradient_is_zero_at_the_optimum() -> None:
    x, y, _ = _logistic_data(500, seed=3)
    model = fit_logistic(x, y, l2=2.0, max_iter=1000)
    xs = model.standardise(x)
    r = expit(xs @ model.coef + model.intercept) - y
    np.testing.assert_allclose(xs.T @ r + 2.0 * model.coef, 0.0, atol=1e-3)
    assert abs(r.sum()) < 1e-3


def test_constant_features_standardise_to_zero() -> None:
    x = np.column_stack([np.ones(50), np.arange(50.0)])
    y = (np.arange(50) > 25).astype(np.int8)
    model = fit_logistic(x, y, l2=1.0, max_iter=200)
    assert model.scale[0] == 1.0
    assert np.all(model.standardise(x)[:, 0] == 0.0)


def test_platt_calibration_undoes_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(1)
    true_logit = rng.standard_normal(5000) * 2
    y = (rng.random(5000) < expit(true_logit)).astype(np.int8)
    calib = fit_calibrator("platt", 3.0 * true_logit - 1.0, y)  # overconfident and shifted
    a, b = calib.params
    assert a == pytest.approx(1 / 3, rel=0.1)
    assert b == pytest.approx(1 / 3, abs=0.1)


def test_platt_calibration_never_falls_with_the_logit() -> None:
    """Held-out logits that contradict the readout give a flat map, not one that inverts every factor."""
    rng = np.random.default_rng(2)
    logit = rng.standard_normal(400) * 2
    y = (rng.random(400) < expit(-logit)).astype(np.int8)
    calib = fit_calibrator("platt", logit, y)
    n_up = int(y.sum())
    smoothed_rate = ((n_up + 1) / (n_up + 2) * n_up + 1 / (400 - n_up + 2) * (400 - n_up)) / 400
    assert calib.params[0] == 0.0
    assert calib.params[1] == pytest.approx(np.log(smoothed_rate / (1 - smoothed_rate)))
    assert np.all(np.diff(calib(np.linspace(-5, 5, 11))) >= 0)


def test_isotonic_fit_is_monotone_and_matches_pav_by_hand() -> None:
    knots_x, knots_y = isotonic_fit(np.array([1.0, 2, 3, 4, 5]), np.array([0.0, 1, 0, 1, 1]))
    np.testing.assert_allclose(knots_y, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(knots_x, [1.0, 2.5, 4.5])
    calib = fit_calibrator("isotonic", np.linspace(-3, 3, 200), (np.linspace(-3, 3, 200) > 0).astype(np.int8))
    out = calib(np.linspace(-5, 5, 101))
    assert np.all(np.diff(out) >= 0)
    assert out[0] == pytest.approx(0.01) and out[-1] == pytest.approx(0.99)


def test_no_calibration_is_the_plain_sigmoid() -> None:
    calib = Calibrator("none", np.zeros(0))
    np.testing.assert_allclose(calib(np.array([-1.0, 0.0, 2.0])), expit([-1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_calibrator("beta", np.zeros(3), np.zeros(3, dtype=np.int8))


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("platt", [np.nan, 0.0], "must be finite"),
        ("isotonic", [1.0, 0.0, 0.2, 0.8], "ascending knots"),
        ("isotonic", [0.0, 1.0, 0.2, 1.5], "within \\[0, 1\\]"),
    ],
)
def test_a_calibration_no_fit_could_produce_is_refused(kind: str, params: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calibrator(kind, np.asarray(params, dtype=np.float64))
