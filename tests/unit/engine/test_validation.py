"""Inputs are validated at the boundary with messages that say what is wrong and where."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from qortex.engine import InvalidSeriesError, Predictor
from qortex.engine.validation import validate_batch, validate_series

GOOD = np.arange(10, dtype=float)


def test_invalid_series_error_is_a_value_error() -> None:
    assert issubclass(InvalidSeriesError, ValueError)


@pytest.mark.parametrize(
    ("series", "fragment"),
    [
        (np.arange(7.0), "has 7 values, at least 8"),
        (np.arange(4097.0), "has 4097 values, at most 4096"),
        (np.array([1.0, 2, 3, np.nan, 5, 6, 7, 8]), "index 3 is NaN"),
        (np.array([1.0, 2, 3, 4, 5, np.inf, 7, 8]), "index 5 is +inf"),
        (np.array([1.0, 2, 3, 4, 5, 6, 7, -np.inf]), "index 7 is -inf"),
        (np.ones((3, 8)), "one-dimensional, got shape (3, 8)"),
        ([1, 2, 3, "x", 5, 6, 7, 8], "first offending value at index 3"),
        ([1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0], "first offending value at index 2"),
        (np.ones(8, dtype=complex), "must be real numbers"),
        (np.ones(8, dtype=bool), "must be real numbers"),
    ],
)
def test_bad_series_is_refused_with_what_and_where(series: object, fragment: str) -> None:
    with pytest.raises(InvalidSeriesError) as info:
        validate_batch([GOOD, GOOD, series])
    assert "series 2" in str(info.value)
    assert fragment in str(info.value)


def test_boundary_lengths_are_accepted() -> None:
    assert validate_series(np.arange(8)).dtype == np.float64
    assert validate_series(np.arange(4096.0)).shape == (4096,)


def test_integer_series_become_float64() -> None:
    out = validate_batch([list(range(9))])
    assert out[0].dtype == np.float64


def test_a_bare_1d_array_is_not_mistaken_for_a_batch() -> None:
    with pytest.raises(InvalidSeriesError, match="wrap it in a list"):
        validate_batch(np.arange(10.0))


def test_a_mapping_is_not_mistaken_for_a_batch_of_its_keys() -> None:
    with pytest.raises(InvalidSeriesError, match=re.escape("got a dict; pass list(batch.values())")):
        validate_batch({"cpu": GOOD, "memory": GOOD})


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (None, "a batch must be a sequence of 1-D numeric series"),
        (np.array(5.0), "a batch must be a sequence of 1-D numeric series"),
        (np.arange(40.0), "got a single 1-D array; wrap it in a list"),
        ({"cpu": np.arange(40.0)}, "got a dict; pass list(batch.values())"),
        ({tuple(range(40)), tuple(range(40, 0, -1))}, "got a set, whose order is arbitrary"),
    ],
    ids=["None", "0-d array", "1-D array", "dict", "set"],
)
def test_fit_and_predict_refuse_what_is_not_a_batch_alike(small_model: Predictor, batch: object, message: str) -> None:
    """A set would be answered in no particular order; fit read a bare series as a batch of numbers."""
    with pytest.raises(InvalidSeriesError, match=re.escape(message)):
        small_model.predict_proba(batch)  # type: ignore[arg-type]
    with pytest.raises(InvalidSeriesError, match=re.escape(message)):
        Predictor(small_model.config).fit(batch)  # type: ignore[arg-type]


def test_predictor_validates_before_computing(small_model: Predictor) -> None:
    with pytest.raises(InvalidSeriesError, match=r"series 1: value at index 4 is NaN"):
        small_model.predict_batch([GOOD, np.array([0.0, 1, 2, 3, np.nan, 5, 6, 7, 8])])
    with pytest.raises(InvalidSeriesError, match="series 0"):
        small_model.predict_proba([np.arange(3.0)])


def test_empty_batch_gives_empty_answers(small_model: Predictor) -> None:
    assert small_model.predict_batch([]) == []
    assert small_model.predict_proba([]).shape == (0,)


def test_integers_beyond_64_bits_are_numbers() -> None:
    assert validate_series([1, 2, 3, 4, 5, 6, 7, 10**30])[-1] == 1e30


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 10**400], "index 7 is too large for a 64-bit float"),
        ([1, 2, 3, 4, 5, 6, 7, 10**30, None], "got NoneType (first offending value at index 8)"),
        ([1.5, 2, 3, 4, 5, 6, True, 8], "index 6 is a boolean"),
        ([1, 2, 3, 4, 5, 6, 7, [8]], "value at index 7 is a list, not a real number"),
        ([1, 2, (3, 4), 5, 6, 7, 8, 9], "value at index 2 is a tuple, not a real number"),
        (np.ma.masked_array(np.arange(10.0), mask=[0] * 5 + [1] + [0] * 4), "index 5 is masked (missing)"),
    ],
)
def test_the_offending_value_is_named_by_its_index(series: list[object], message: str) -> None:
    with pytest.raises(InvalidSeriesError, match=re.escape(message)):
        validate_series(series)


@pytest.mark.skipif(
    np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="long double is float64 on this platform"
)
def test_a_long_double_beyond_float64_is_refused_without_a_warning() -> None:
    series = np.array(["1"] * 7 + ["1e400"], dtype=np.longdouble)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidSeriesError, match=re.escape("index 7 is too large for a 64-bit float")):
            validate_series(series)


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ((float(i) for i in range(8)), "must be one-dimensional, a sequence of numbers, got generator"),
        ({i: float(i) for i in range(8)}, "must be one-dimensional, a sequence of numbers, got dict"),
        (None, "must be one-dimensional, a sequence of numbers, got NoneType"),
        ("12345678", "must be one-dimensional, a sequence of numbers, got str"),
        (np.float64(1.0), "must be one-dimensional, a sequence of numbers, got float64"),
        (np.arange(8).reshape(2, 4).astype(object), "must be one-dimensional, got shape (2, 4)"),
    ],
)
def test_what_is_not_a_series_of_numbers_is_named_not_its_first_value(series: object, message: str) -> None:
    # A generator of valid numbers has no "offending value at index 0"; it is not a sequence at all.
    with pytest.raises(InvalidSeriesError, match=re.escape(message)):
        validate_series(series)
