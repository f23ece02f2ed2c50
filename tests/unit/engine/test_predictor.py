"""The predictor's promises: deterministic, scale-free, batch-independent, calibrated, honest."""

from __future__ import annotations

import json
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qortex.engine import (
    EngineConfig,
    Factor,
    InvalidSeriesError,
    Pattern,
    PredictionResult,
    Predictor,
    sliding_windows,
)
from qortex.engine import predictor as predictor_module

from .conftest import SMALL_CONFIG, noisy_sine

series_st = st.lists(st.integers(-500, 500), min_size=8, max_size=120).map(
    lambda v: np.cumsum(np.asarray(v, dtype=float))
)
batch_st = st.lists(series_st, min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(batch_st)
def test_probabilities_are_in_unit_interval_and_confidence_in_half_to_one(
    small_model: Predictor, batch: list[np.ndarray]
) -> None:
    results = small_model.predict_batch(batch)
    for r in results:
        assert 0.0 <= r.probability_up <= 1.0
        assert 0.5 <= r.confidence <= 1.0
        assert r.confidence == pytest.approx(max(r.probability_up, 1 - r.probability_up))
        if abs(r.probability_up - 0.5) <= SMALL_CONFIG.neutral_band:
            assert r.direction == "neutral"
        else:
            assert r.direction == ("up" if r.probability_up > 0.5 else "down")


def _answers(results: list[PredictionResult]) -> list[dict[str, object]]:
    """Everything a result says except how long it took."""
    answers = [r.to_dict() for r in results]
    for answer in answers:
        answer.pop("timings_ms")
    return answers


@settings(max_examples=40, deadline=None)
@given(batch_st)
def test_a_batch_answers_exactly_like_its_series_one_by_one(small_model: Predictor, batch: list[np.ndarray]) -> None:
    together = small_model.predict_proba(batch)
    alone = np.array([small_model.predict_proba([s])[0] for s in batch])
    np.testing.assert_array_equal(together, alone)
    results = small_model.predict_batch(batch)
    np.testing.assert_array_equal([r.probability_up for r in results], together)
    assert _answers(results) == _answers([small_model.predict_batch([s])[0] for s in batch])


def test_the_default_model_answers_a_large_batch_with_the_same_bits_as_one_by_one() -> None:
    """Large enough for the sparse recurrent product; the engine's pool mixes tenants' series into one batch."""
    model = Predictor.load_default()
    rng = np.random.default_rng(11)
    batch = [np.cumsum(rng.standard_normal(int(n))) for n in rng.integers(8, 300, size=80)]
    assert _answers(model.predict_batch(batch)) == _answers([model.predict_batch([s])[0] for s in batch])


@settings(max_examples=40, deadline=None)
@given(series_st, st.floats(0.01, 1000.0), st.floats(-1e4, 1e4))
def test_positive_scale_and_shift_do_not_change_the_answer(
    small_model: Predictor, series: np.ndarray, scale: float, shift: float
) -> None:
    base = small_model.predict_batch([series])[0]
    moved = small_model.predict_batch([series * scale + shift])[0]
    assert moved.probability_up == pytest.approx(base.probability_up, abs=1e-5)
    assert moved.direction == base.direction


@settings(max_examples=20, deadline=None)
@given(series_st)
def test_same_input_same_answer(small_model: Predictor, series: np.ndarray) -> None:
    first = small_model.predict_batch([series])[0].to_dict()
    second = small_model.predict_batch([series])[0].to_dict()
    first.pop("timings_ms")
    second.pop("timings_ms")
    assert first == second


def test_fitting_twice_with_one_seed_gives_the_same_model_and_other_seeds_differ() -> None:
    data = [noisy_sine(300, s) for s in range(3)]
    probe = [noisy_sine(80, 100 + s) for s in range(5)]
    a = Predictor(SMALL_CONFIG).fit(data)
    b = Predictor(SMALL_CONFIG).fit(data)
    c = Predictor(EngineConfig(**{**SMALL_CONFIG.to_dict(), "seed": 1})).fit(data)
    np.testing.assert_array_equal(a.predict_proba(probe), b.predict_proba(probe))
    assert a.model_version == b.model_version
    assert a.model_version != c.model_version


def test_constant_series_is_neutral_at_exactly_one_half_with_a_plateau(small_model: Predictor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = small_model.predict_batch([np.full(50, 42.0), np.zeros(8), np.full(4096, -1e300)])
        probs = small_model.predict_proba([np.full(50, 42.0)])
    assert probs[0] == 0.5
    for r in results:
        assert r.direction == "neutral"
        assert r.confidence == 0.5 and r.probability_up == 0.5
        assert r.patterns[0].type == "plateau" and r.patterns[0].strength == pytest.approx(1.0)


def test_model_beats_chance_on_held_out_windows_of_a_structured_series(sine_model: Predictor) -> None:
    x, y = sliding_windows(noisy_sine(1500, seed=1234), 64, 1)
    p = sine_model.predict_proba(list(x))
    accuracy = float(np.mean((p > 0.5) == (y == 1)))
    # A binomial test: at n ~ 1400 chance accuracy exceeds 0.55 with probability < 1e-4.
    assert accuracy > 0.55, accuracy
    majority = max(y.mean(), 1 - y.mean())
    assert accuracy > majority + 0.05


def test_model_is_calibrated_roughly_on_held_out_windows(sine_model: Predictor) -> None:
    x, y = sliding_windows(noisy_sine(3000, seed=77), 64, 1)
    p = sine_model.predict_proba(list(x))
    brier = float(np.mean((p - y) ** 2))
    assert brier < 0.25  # better than always answering 0.5
    confident = np.abs(p - 0.5) > 0.3
    assert confident.any()
    hit = np.mean((p[confident] > 0.5) == (y[confident] == 1))
    assert hit > 0.75


def test_result_shape_matches_the_contract(sine_model: Predictor) -> None:
    series = noisy_sine(200, seed=5)
    result = sine_model.predict_batch([series], horizon=1)[0]
    assert isinstance(result, PredictionResult)
    assert len(result.factors) in range(1, 9)
    assert all(isinstance(f, Factor) for f in result.factors)
    weights = [abs(f.weight) for f in result.factors]
    assert weights == sorted(weights, reverse=True)
    assert {f.group for f in result.factors} <= {"patterns", "momentum", "reservoir", "quantum"}
    assert len(result.quantum["expectations"]) == 8
    assert len(result.quantum["correlations"]) == 28
    assert set(result.timings_ms) == {"encoding", "neuromorphic", "patterns", "quantum", "readout"}
    assert all(v >= 0 for v in result.timings_ms.values())
    assert result.model_version == sine_model.model_version
    for pattern in result.patterns:
        assert isinstance(pattern, Pattern)
        assert 0 <= pattern.start <= pattern.end <= len(series) - 1
        assert 0 <= pattern.strength <= 1
        assert (pattern.period is not None) == (pattern.type == "oscillation")
        assert len(pattern.spatial_features) == 8
    encoded = json.loads(json.dumps(result.to_dict()))
    assert encoded["direction"] == result.direction
    assert encoded["factors"][0]["name"] == result.factors[0].name


def test_a_result_reads_as_documented_for_series_whose_answer_is_known() -> None:
    model = Predictor.load_default()
    t = np.arange(100.0)
    ramp, cycle, still = model.predict_batch([3.0 * t + 7.0, np.sin(2 * np.pi * t / 24.0), np.full(100, 4.0)])
    trend = {p.type: p for p in ramp.patterns}["trend_up"]
    # Spans index the series as given: its last 64 values are indices 36 to 99.
    assert (trend.start, trend.end, trend.strength) == (36, 99, 1.0)
    assert "trend_down" not in {p.type for p in ramp.patterns}
    assert ramp.direction == "up"
    [oscillation] = [p for p in cycle.patterns if p.type == "oscillation"]
    assert oscillation.period == pytest.approx(24.0, abs=1.0)
    assert oscillation.start == 99 - int(np.ceil(2 * oscillation.period))
    for pattern in ramp.patterns + cycle.patterns:
        assert len(pattern.spatial_features) == 8
        assert np.linalg.norm(pattern.spatial_features) == pytest.approx(1.0, abs=1e-6)
        assert pattern.spatial_features == sorted(pattern.spatial_features, reverse=True)
    assert (still.direction, still.confidence, [p.type for p in still.patterns]) == ("neutral", 0.5, ["plateau"])
    assert still.patterns[0].spatial_features == [0.0] * 8
    assert all(f.weight == 0.0 for f in still.factors)


def test_factor_weights_add_up_to_the_logit(sine_model: Predictor) -> None:
    series = noisy_sine(100, seed=9)
    config = EngineConfig(**{**sine_model.config.to_dict(), "top_factors": 1000})
    wide = Predictor(config)
    wide.__dict__.update({k: v for k, v in sine_model.__dict__.items() if k not in ("config", "layout")})
    result = wide.predict_batch([series])[0]
    fwd_logit = sum(f.weight for f in result.factors) + sine_model.readout_.intercept
    assert sine_model.calibrator_(np.array([fwd_logit]))[0] == pytest.approx(result.probability_up, abs=1e-6)


def _regime_change(n: int, seed: int) -> np.ndarray:
    """Moves that persist for the first 80 % of the series and reverse in the last 20 %."""
    rng = np.random.default_rng(seed)
    moves = np.zeros(n)
    for i in range(1, n):
        moves[i] = (0.9 if i < 0.8 * n else -0.9) * moves[i - 1] + 0.5 * rng.standard_normal()
    return np.cumsum(moves) + 100.0


def test_a_factor_that_pushes_the_logit_up_never_pushes_the_probability_down() -> None:
    """Its held-out windows contradict what the readout learned; the calibration must not invert the readout."""
    flags = {"use_reservoir": False, "use_quantum": False, "use_patterns": False, "use_seasonal": False}
    config = EngineConfig(**{**SMALL_CONFIG.to_dict(), **flags, "window": 16, "use_window_moves": False})
    model = Predictor(config).fit([_regime_change(400, s) for s in range(4)])
    assert model.calibrator_.kind == "platt"
    assert model.calibrator_.params[0] >= 0
    assert np.all(np.diff(model.calibrator_(np.linspace(-5.0, 5.0, 21))) >= 0)


def test_short_series_use_padding_and_long_series_use_their_last_window(sine_model: Predictor) -> None:
    long = noisy_sine(3000, seed=3)
    p_long, p_tail = sine_model.predict_proba([long, long[-64:]])
    assert p_long == p_tail
    short = sine_model.predict_batch([long[:10]])[0]
    assert 0 <= short.probability_up <= 1
    assert all(0 <= p.start <= p.end <= 9 for p in short.patterns)


def test_horizon_must_match_the_model(sine_model: Predictor) -> None:
    with pytest.raises(ValueError, match="horizon 1"):
        sine_model.predict_batch([noisy_sine(100, 0)], horizon=3)


@pytest.mark.parametrize("encoder", ["rate", "latency", "population"])
def test_every_encoder_trains_a_working_model(encoder: str) -> None:
    config = EngineConfig(**{**SMALL_CONFIG.to_dict(), "encoder": encoder})
    model = Predictor(config).fit([noisy_sine(300, s) for s in range(3)])
    x, y = sliding_windows(noisy_sine(600, seed=50), 32, 1)
    assert np.mean((model.predict_proba(list(x)) > 0.5) == (y == 1)) > 0.55


@pytest.mark.parametrize(
    "flags",
    [
        {"use_reservoir": False},
        {"use_quantum": False},
        {"use_patterns": False},
        {"use_window_moves": False, "use_seasonal": False},
        {"use_reservoir": False, "use_quantum": False, "use_patterns": False},
        {"calibration": "isotonic"},
        {"calibration": "none"},
    ],
)
def test_stages_can_be_switched_off_and_calibration_chosen(flags: dict[str, object]) -> None:
    config = EngineConfig(**{**SMALL_CONFIG.to_dict(), **flags})
    model = Predictor(config).fit([noisy_sine(300, s) for s in range(3)])
    result = model.predict_batch([noisy_sine(60, 8)])[0]
    groups = {name.split(" ")[0] for name in model.layout.names}
    assert ("reservoir" in groups) == config.use_reservoir
    assert ("quantum" in groups) == config.use_quantum
    assert ("pattern" in groups) == config.use_patterns
    assert ("seasonal" in groups) == config.use_seasonal
    assert ("momentum lag 11" in model.layout.names) == config.use_window_moves
    assert 0 <= result.probability_up <= 1
    assert len(result.quantum["expectations"]) == (config.n_qubits if config.use_quantum else 0)


def test_fit_windows_equals_fit_on_the_same_windows() -> None:
    series = noisy_sine(400, seed=2)
    x, y = sliding_windows(series, SMALL_CONFIG.window, 1)
    a = Predictor(SMALL_CONFIG).fit([series])
    b = Predictor(SMALL_CONFIG).fit_windows(x, y, horizon=1)
    assert a.model_version == b.model_version


@pytest.mark.parametrize("horizon", [1, 2, 3])
def test_the_calibrating_readout_learns_no_target_past_the_first_held_out_origin(
    monkeypatch: pytest.MonkeyPatch, horizon: int
) -> None:
    """At horizon h the h - 1 windows before the held-out fold have targets inside the span it forecasts."""
    series = noisy_sine(300, seed=3)
    x, y = sliding_windows(series, SMALL_CONFIG.window, horizon)
    n_hold = round(SMALL_CONFIG.calibration_fraction * y.size)
    fitted_rows: list[int] = []
    real_fit = predictor_module.fit_logistic

    def recording_fit(features: np.ndarray, labels: np.ndarray, **kwargs: object) -> object:
        fitted_rows.append(int(labels.size))
        return real_fit(features, labels, **kwargs)

    monkeypatch.setattr(predictor_module, "fit_logistic", recording_fit)
    Predictor(SMALL_CONFIG).fit([series], horizon=horizon)
    Predictor(SMALL_CONFIG).fit_windows(x, y, horizon=horizon)
    # calibrating readout without the held-out fold and the windows before it that reach into it, then the final one
    expected = [y.size - n_hold - (horizon - 1), y.size]
    assert fitted_rows == expected * 2


def test_fit_refuses_unusable_training_data() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        Predictor(SMALL_CONFIG).fit([noisy_sine(40, 0)])
    with pytest.raises(ValueError, match="both up and down"):
        Predictor(SMALL_CONFIG).fit([np.arange(200.0)])
    with pytest.raises(ValueError, match="shape"):
        Predictor(SMALL_CONFIG).fit_windows(np.zeros((30, 5)), np.zeros(30))
    with pytest.raises(InvalidSeriesError, match=r"series 1: value at index 3 is NaN"):
        Predictor(SMALL_CONFIG).fit([noisy_sine(100, 0), np.array([1.0, 2.0, 3.0, np.nan] * 30)])
    with pytest.raises(RuntimeError, match="not fitted"):
        Predictor(SMALL_CONFIG).predict_proba([np.arange(10.0)])


def test_metadata_describes_the_model(sine_model: Predictor) -> None:
    meta = sine_model.metadata
    assert meta["config"] == EngineConfig().to_dict()
    assert meta["horizon"] == 1
    assert meta["lineage"] == {"data": "sine"}
    assert len(meta["feature_names"]) == len(sine_model.layout.names)
    assert meta["model_version"] == sine_model.model_version
    for key in ("qortex_version", "numpy_version", "model_hash", "metrics", "created_at"):
        assert key in meta
    json.dumps(meta)


@pytest.mark.parametrize("series", [[0.3] * 19 + [0.1 + 0.2], [1.0] * 63 + [1.0 + 2**-52]])
def test_a_series_constant_up_to_float_rounding_predicts_like_a_constant_one(series: list[float]) -> None:
    model = Predictor.load_default()
    rounded, exact = model.predict_batch([series, [series[0]] * len(series)])
    for r in (rounded, exact):
        assert r.direction == "neutral"
        assert r.confidence == 0.5 and r.probability_up == 0.5
        assert [p.type for p in r.patterns] == ["plateau"]


def test_a_short_series_reports_no_oscillation_longer_than_itself(small_model: Predictor) -> None:
    result = small_model.predict_batch([np.arange(1.0, 10.0)])[0]
    assert "oscillation" not in [p.type for p in result.patterns]
    for result in small_model.predict_batch([noisy_sine(20, s, period=4.0) for s in range(5)]):
        assert all(p.period <= 19 / 2 for p in result.patterns if p.period is not None)


@pytest.mark.parametrize("horizon", ["2", 1.0, True, 0])
def test_fit_refuses_a_bad_horizon_with_a_value_error(horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon must be"):
        Predictor(SMALL_CONFIG).fit([noisy_sine(200, 0)], horizon=horizon)  # type: ignore[arg-type]


@pytest.mark.parametrize("horizon", ["1", 1.0, True, np.bool_(True)])
def test_predict_refuses_a_horizon_that_is_not_an_integer(sine_model: Predictor, horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon must be an integer"):
        sine_model.predict_batch([noisy_sine(100, 0)], horizon=horizon)  # type: ignore[arg-type]


def test_a_numpy_integer_horizon_is_an_integer(sine_model: Predictor) -> None:
    assert sine_model.predict_batch([noisy_sine(100, 0)], horizon=np.int64(1))[0].horizon == 1
    model = Predictor(SMALL_CONFIG).fit([noisy_sine(300, 0)], horizon=np.int64(2))  # type: ignore[arg-type]
    assert model.metadata["horizon"] == 2 and type(model.horizon_) is int


@pytest.mark.parametrize("labels", [[256, 257], [0.0, 1.5], [-0.5, 1.0]], ids=["wrap to 0/1", "1.5", "-0.5"])
def test_fit_windows_refuses_labels_other_than_zero_and_one(labels: list[float]) -> None:
    x, y = sliding_windows(noisy_sine(400, seed=2), SMALL_CONFIG.window, 1)
    bad = np.resize(np.asarray(labels), y.shape)
    with pytest.raises(ValueError, match="0/1 labels"):
        Predictor(SMALL_CONFIG).fit_windows(x, bad, horizon=1)


@pytest.mark.parametrize("lineage", [{"x": float("nan")}, {"x": object()}, ["not", "a", "dict"]])
def test_fit_refuses_lineage_that_could_not_be_saved_before_fitting(lineage: object) -> None:
    predictor = Predictor(SMALL_CONFIG)
    with pytest.raises(ValueError, match="lineage must be"):
        predictor.fit([noisy_sine(200, 0)], lineage=lineage)  # type: ignore[arg-type]
    x, y = sliding_windows(noisy_sine(200, 0), SMALL_CONFIG.window, 1)
    with pytest.raises(ValueError, match="lineage must be"):
        predictor.fit_windows(x, y, lineage=lineage)  # type: ignore[arg-type]
    assert not hasattr(predictor, "readout_")


@pytest.mark.parametrize("changes", [{"spectral_radius": 1e300}, {"input_scale": 1e40}])
def test_fit_refuses_a_configuration_whose_reservoir_overflows(changes: dict[str, float]) -> None:
    """Such a model would answer NaN for every series, and its artifact could not be loaded."""
    config = EngineConfig(**{**SMALL_CONFIG.to_dict(), **changes})
    predictor = Predictor(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy reports the overflow itself
        with pytest.raises(ValueError, match="reservoir features are not finite"):
            predictor.fit([noisy_sine(200, s) for s in range(2)])
    assert not hasattr(predictor, "readout_")


@pytest.mark.parametrize("dtype", [complex, object, bool])
def test_fit_windows_refuses_windows_that_are_not_real_numbers(dtype: type) -> None:
    """numpy would drop the imaginary part of complex windows with only a warning."""
    x, y = sliding_windows(noisy_sine(400, seed=2), SMALL_CONFIG.window, 1)
    with pytest.raises(ValueError, match="x must hold real numbers"):
        Predictor(SMALL_CONFIG).fit_windows(x.astype(dtype), y)


def test_a_pass_takes_fewer_rows_the_more_memory_each_row_needs() -> None:
    assert predictor_module.chunk_rows(EngineConfig()) == predictor_module.CHUNK
    # At the configuration maxima a single row is about 200 MB.
    assert predictor_module.chunk_rows(EngineConfig(window=4096, n_neurons=4096, n_qubits=16)) == 1


def test_a_batch_of_large_rows_is_predicted_within_the_memory_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the bound, 100 rows of window 256 and 256 neurons would hold ~80 MB of reservoir state at once."""
    model = Predictor(EngineConfig(window=256, n_neurons=256)).fit([noisy_sine(400, s) for s in range(2)], horizon=1)
    batch = [noisy_sine(300, s) for s in range(100)]
    whole = model.predict_proba(batch)
    answers = _answers(model.predict_batch(batch))
    monkeypatch.setattr(predictor_module, "CHUNK_BYTES", 8 * 2**20)
    assert predictor_module.chunk_rows(model.config) < 20
    tracemalloc.start()
    try:
        np.testing.assert_array_equal(model.predict_proba(batch), whole)
        assert _answers(model.predict_batch(batch)) == answers
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 8 * 2**20
