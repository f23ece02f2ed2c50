"""Validation of input series at the engine boundary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from qortex.engine.errors import InvalidSeriesError

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "check_horizon", "is_integer", "validate_batch", "validate_series"]

MIN_LENGTH = 8
MAX_LENGTH = 4096


def validate_series(series: Any, *, index: int = 0, max_length: int | None = MAX_LENGTH) -> npt.NDArray[np.float64]:
    """Returns `series` as a float64 1-D array or raises InvalidSeriesError saying what and where."""
    where = f"series {index}"
    if isinstance(series, np.ma.MaskedArray) and np.ma.is_masked(series):
        # np.asarray would read the hidden values under the mask as data.
        bad = int(np.flatnonzero(np.ma.getmaskarray(series))[0])
        raise InvalidSeriesError(f"{where}: value at index {bad} is masked (missing); all values must be present")
    try:
        arr = np.asarray(series)
    except (TypeError, ValueError) as exc:
        raise _unreadable(series, where, exc) from None
    if arr.ndim == 0:
        # numpy wraps what is not a sequence (a generator, a dict, None, a scalar) as one value.
        given = type(series).__name__
        raise InvalidSeriesError(f"{where}: must be one-dimensional, a sequence of numbers, got {given}")
    if arr.ndim != 1:
        raise InvalidSeriesError(f"{where}: must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iuf" and isinstance(series, (list, tuple)):
        # numpy quietly reads [1.5, True] as [1.5, 1.0].
        flag = next((i for i, value in enumerate(series) if isinstance(value, (bool, np.bool_))), None)
        if flag is not None:
            raise InvalidSeriesError(f"{where}: value at index {flag} is a boolean, not a real number")
    if arr.dtype == object:
        arr = _object_values_as_floats(arr.tolist(), where)
    if arr.dtype.kind not in "iuf":
        raise InvalidSeriesError(
            f"{where}: values must be real numbers, got dtype {arr.dtype} "
            f"(first offending value at index {_first_non_numeric(series, arr)})"
        )
    n = arr.shape[0]
    if n < MIN_LENGTH:
        raise InvalidSeriesError(f"{where}: has {n} values, at least {MIN_LENGTH} are required")
    if max_length is not None and n > max_length:
        raise InvalidSeriesError(f"{where}: has {n} values, at most {max_length} are allowed")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        # A wider float (long double) may hold finite values that become infinite as float64.
        too_large = np.abs(arr) > np.finfo(np.float64).max
        if too_large.any():
            raise InvalidSeriesError(
                f"{where}: value at index {int(np.argmax(too_large))} is too large for a 64-bit float"
            )
    values = arr.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.argmin(finite))
        kind = "NaN" if np.isnan(values[bad]) else ("+inf" if values[bad] > 0 else "-inf")
        raise InvalidSeriesError(f"{where}: value at index {bad} is {kind}; all values must be finite")
    return values


def validate_batch(series_list: Sequence[Any], *, max_length: int | None = MAX_LENGTH) -> list[npt.NDArray[np.float64]]:
    """Validates every series of a batch; the error names the first bad series and value."""
    not_sized = not hasattr(series_list, "__len__") or (isinstance(series_list, np.ndarray) and series_list.ndim == 0)
    if isinstance(series_list, (str, bytes)) or not_sized:
        raise InvalidSeriesError("a batch must be a sequence of 1-D numeric series")
    if isinstance(series_list, AbstractSet):
        # Answers come back in the batch's order, which a set does not have.
        kind = type(series_list).__name__
        raise InvalidSeriesError(f"a batch must be a sequence of series, got a {kind}, whose order is arbitrary")
    if isinstance(series_list, np.ndarray) and series_list.ndim == 1 and series_list.dtype.kind in "iuf":
        raise InvalidSeriesError("a batch must be a sequence of series, got a single 1-D array; wrap it in a list")
    if isinstance(series_list, Mapping):
        # Iterating a dict gives its keys, which would each be refused as a series that is a string.
        kind = type(series_list).__name__
        raise InvalidSeriesError(f"a batch must be a sequence of series, got a {kind}; pass list(batch.values())")
    return [validate_series(s, index=i, max_length=max_length) for i, s in enumerate(series_list)]


def is_integer(value: object) -> TypeGuard[int | np.integer[Any]]:
    """A Python or numpy integer; a bool is not one here."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def check_horizon(horizon: object) -> None:
    """Raises ValueError unless `horizon` is an integer >= 1."""
    if not is_integer(horizon):
        raise ValueError(f"horizon must be an integer, got {horizon!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")


def _is_number(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def _object_values_as_floats(items: list[Any], where: str) -> npt.NDArray[np.float64]:
    """numpy keeps integers beyond 64 bits as objects: they are numbers, unless too large for a float."""
    for i, value in enumerate(items):
        if not _is_number(value):
            raise InvalidSeriesError(
                f"{where}: values must be real numbers, got {type(value).__name__} (first offending value at index {i})"
            )
        try:
            float(value)
        except OverflowError:
            raise InvalidSeriesError(f"{where}: value at index {i} is too large for a 64-bit float") from None
    return np.asarray(items, dtype=np.float64)


def _unreadable(series: Any, where: str, exc: Exception) -> InvalidSeriesError:
    # numpy refuses [1, 2, [3]] as "inhomogeneous" without saying where; name the nested value.
    if isinstance(series, (list, tuple)):
        nested = next((i for i, value in enumerate(series) if _is_nested(value)), None)
        if nested is not None:
            value = series[nested]
            kind = "an array" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            return InvalidSeriesError(f"{where}: value at index {nested} is {kind}, not a real number")
    return InvalidSeriesError(f"{where}: cannot be read as an array ({exc})")


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim > 0)


def _first_non_numeric(series: Any, arr: npt.NDArray[Any]) -> int:
    # numpy turns [1, "x"] into all strings, so look at the caller's own elements when we can.
    items = list(series) if isinstance(series, (list, tuple)) else arr.reshape(-1).tolist()
    return next((i for i, value in enumerate(items) if not _is_number(value)), 0)
