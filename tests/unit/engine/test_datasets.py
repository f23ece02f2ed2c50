"""The real datasets load offline, are finite, and are long enough for walk-forward evaluation."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qortex.engine import datasets


@pytest.mark.parametrize("name", datasets.dataset_names())
def test_every_dataset_loads_finite_read_only_series_with_lineage(name: str) -> None:
    ds = datasets.load_dataset(name)
    assert ds.name == name
    assert ds.series, "a dataset has at least one series"
    assert len(ds.series_names) == len(ds.series)
    for s in ds.series:
        assert s.dtype == np.float64 and s.ndim == 1
        assert np.all(np.isfinite(s))
        assert not s.flags.writeable
        assert np.ptp(s) > 0, "a constant series has no direction to predict"
    assert ds.package in {"statsmodels", "statsforecast"}
    assert ds.package_version
    assert len(ds.sha256()) == 64


def test_default_collection_has_enough_windows_for_a_64_value_window() -> None:
    for ds in datasets.load_collection("default"):
        assert min(s.size for s in ds.series) - 64 >= 79, ds.name


def test_co2_gaps_are_interpolated_not_dropped() -> None:
    co2 = datasets.load_dataset("co2").series[0]
    assert co2.size == 2284  # 1958-03-29 .. 2001-12-29, every week kept
    assert np.all(np.abs(np.diff(co2)) < 5.0)


def test_elnino_is_the_monthly_table_flattened_in_time_order() -> None:
    sst = datasets.load_dataset("elnino").series[0]
    assert sst.size == 61 * 12
    assert sst[0] == pytest.approx(23.11) and sst[1] == pytest.approx(24.20)


def test_macrodata_has_one_series_per_column() -> None:
    macro = datasets.load_dataset("macrodata")
    assert macro.series_names[:3] == ["realgdp", "realcons", "realinv"]
    assert all(s.size == 203 for s in macro.series)


def test_hash_changes_with_the_data() -> None:
    a = datasets.load_dataset("nile")
    b = datasets.Dataset(a.name, a.source, [a.series[0][:-1]], a.frequency, a.description)
    assert a.sha256() != b.sha256()


def test_collections_expand_in_order_without_duplicates() -> None:
    assert datasets.resolve_names("nile,short") == ("nile", "interest_inflation", "fertility")
    assert set(datasets.resolve_names("all")) == set(datasets.dataset_names())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown dataset or collection 'nope'; known: all, default, short, "),
        ("sunspots,nope", "unknown dataset or collection 'nope'"),
        (" , ", "no dataset or collection named; known: all, default, short, "),
        ("", "no dataset or collection named; known: all, default, short, "),
    ],
)
def test_unknown_names_are_refused_with_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(datasets.DatasetUnavailableError, match=re.escape(message)):
        datasets.resolve_names(spec)


def test_co2_marks_the_weeks_it_interpolated() -> None:
    co2 = datasets.load_dataset("co2")
    (filled,) = co2.filled
    assert filled.shape == co2.series[0].shape and filled.sum() == 59
    assert all(not ds.filled or len(ds.filled) == len(ds.series) for ds in datasets.load_collection("all"))
