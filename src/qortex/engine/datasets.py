"""Real univariate time series that load offline from installed packages.

The data ship inside statsmodels (``statsmodels.datasets``) and statsforecast (AirPassengers), both
part of the optional ``eval`` extra, so nothing here touches the network. Each loader returns a
:class:`Dataset` whose series are finite float64 arrays in time order; gaps (the weekly CO2 record
has some) are filled by linear interpolation, and marked in ``Dataset.filled``: an interpolated value is
drawn from the next observed one, so evaluation neither forecasts from nor scores one. Datasets are
grouped into named collections:

- ``default``: the series long enough for walk-forward evaluation with a 64-value window; the
  default model is trained on these and ``qortex eval`` scores them.
- ``short``: real series of 55 to 110 values; evaluate them with a window of 16 or less.
- ``all``: both.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded: its package is missing or its name is unknown."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named group of real univariate series from one source."""

    name: str
    source: str
    series: list[FloatArray]
    frequency: str
    description: str
    season_length: int = 1
    series_names: list[str] = field(default_factory=list)
    filled: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    """Per series, True where a missing value was interpolated; empty when none was."""

    @property
    def package(self) -> str:
        """The installed distribution the data come from (first component of ``source``)."""
        return self.source.split(".", 1)[0]

    @property
    def package_version(self) -> str:
        """Version of the installed package that ships the data."""
        return importlib.metadata.version(self.package)

    @property
    def n_points(self) -> int:
        """Total number of values over all series."""
        return int(sum(s.size for s in self.series))

    def sha256(self) -> str:
        """SHA-256 over the float64 little-endian bytes of every series, with their lengths."""
        digest = hashlib.sha256()
        for s in self.series:
            digest.update(np.int64(s.size).astype("<i8").tobytes())
            digest.update(np.ascontiguousarray(s, dtype="<f8").tobytes())
        return digest.hexdigest()


def _import(module: str) -> ModuleType:
    """Import an optional dependency, or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        raise DatasetUnavailableError(
            f"the real datasets need {top}, which is not installed: pip install 'qortex[eval]'"
        ) from exc


def _finite(values: Any) -> FloatArray:
    """Fill interior gaps by linear interpolation, drop leading/trailing gaps, freeze the array."""
    return _finite_and_filled(values)[0]


def _finite_and_filled(values: Any) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """:func:`_finite`, and where it interpolated."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(arr)
    if not ok.any():
        raise DatasetUnavailableError("a series has no finite values")
    first, last = int(np.argmax(ok)), int(arr.size - np.argmax(ok[::-1]))
    arr, ok = arr[first:last].copy(), ok[first:last]
    if not ok.all():
        idx = np.arange(arr.size)
        arr[~ok] = np.interp(idx[~ok], idx[ok], arr[ok])
    arr.setflags(write=False)
    filled = ~ok
    filled.setflags(write=False)
    return arr, filled


def _sm_frame(name: str) -> Any:
    """The pandas frame of a statsmodels dataset."""
    module = _import(f"statsmodels.datasets.{name}")
    return module.load_pandas().data


def _sunspots() -> Dataset:
    frame = _sm_frame("sunspots")
    return Dataset(
        name="sunspots",
        source="statsmodels.datasets.sunspots",
        series=[_finite(frame["SUNACTIVITY"])],
        frequency="yearly",
        description="Yearly mean sunspot numbers, 1700-2008.",
        series_names=["SUNACTIVITY"],
    )


def _co2() -> Dataset:
    frame = _sm_frame("co2")
    values, filled = _finite_and_filled(frame["co2"])
    return Dataset(
        name="co2",
        source="statsmodels.datasets.co2",
        series=[values],
        frequency="weekly",
        description="Weekly atmospheric CO2 at Mauna Loa (ppm), 1958-2001; missing weeks interpolated.",
        series_names=["co2"],
        filled=[filled],
    )


def _elnino() -> Dataset:
    frame = _sm_frame("elnino")
    months = frame.drop(columns=["YEAR"]).to_numpy(dtype=np.float64)
    return Dataset(
        name="elnino",
        source="statsmodels.datasets.elnino",
        series=[_finite(months.ravel())],
        frequency="monthly",
        description="Monthly sea surface temperature of the El Nino region (deg C), 1950-2010, flattened.",
        season_length=12,
        series_names=["sst"],
    )


MACRO_COLUMNS: tuple[str, ...] = (
    "realgdp",
    "realcons",
    "realinv",
    "realgovt",
    "realdpi",
    "cpi",
    "m1",
    "tbilrate",
    "unemp",
    "pop",
    "infl",
    "realint",
)


def _macrodata() -> Dataset:
    frame = _sm_frame("macrodata")
    return Dataset(
        name="macrodata",
        source="statsmodels.datasets.macrodata",
        series=[_finite(frame[c]) for c in MACRO_COLUMNS],
        frequency="quarterly",
        description="US quarterly macroeconomic series 1959Q1-2009Q3 (one series per column).",
        season_length=4,
        series_names=list(MACRO_COLUMNS),
    )


def _elec_equip() -> Dataset:
    module = _import("statsmodels.datasets.elec_equip")
    frame = module.load().data
    return Dataset(
        name="elec_equip",
        source="statsmodels.datasets.elec_equip",
        series=[_finite(frame.iloc[:, 0])],
        frequency="monthly",
        description="EU manufacture of electrical equipment, monthly turnover index 1995-2016.",
        season_length=12,
        series_names=[str(frame.columns[0])],
    )


def _air_passengers() -> Dataset:
    module = _import("statsforecast.utils")
    return Dataset(
        name="air_passengers",
        source="statsforecast.utils.AirPassengers",
        series=[_finite(module.AirPassengers)],
        frequency="monthly",
        description="Monthly international airline passengers (thousands), 1949-1960.",
        season_length=12,
        series_names=["AirPassengers"],
    )


def _nile() -> Dataset:
    frame = _sm_frame("nile")
    return Dataset(
        name="nile",
        source="statsmodels.datasets.nile",
        series=[_finite(frame["volume"])],
        frequency="yearly",
        description="Yearly flow of the Nile at Aswan, 1871-1970 (100 values).",
        series_names=["volume"],
    )


def _interest_inflation() -> Dataset:
    frame = _sm_frame("interest_inflation")
    return Dataset(
        name="interest_inflation",
        source="statsmodels.datasets.interest_inflation",
        series=[_finite(frame["Dp"]), _finite(frame["R"])],
        frequency="quarterly",
        description="German quarterly inflation (Dp) and interest rate (R), 1972Q2-1998Q4 (107 values).",
        season_length=4,
        series_names=["Dp", "R"],
    )


FERTILITY_COUNTRIES: tuple[str, ...] = (
    "USA",
    "GBR",
    "FRA",
    "DEU",
    "JPN",
    "IND",
    "BRA",
    "CHN",
    "NGA",
    "MEX",
)


def _fertility() -> Dataset:
    frame = _sm_frame("fertility").set_index("Country Code")
    years = [c for c in frame.columns if str(c).isdigit()]
    codes = [c for c in FERTILITY_COUNTRIES if c in frame.index]
    return Dataset(
        name="fertility",
        source="statsmodels.datasets.fertility",
        series=[_finite(frame.loc[c, years]) for c in codes],
        frequency="yearly",
        description="Total fertility rate (births per woman) by country, 1960 onward, about 50 values each.",
        series_names=codes,
    )


_LOADERS: dict[str, Callable[[], Dataset]] = {
    "sunspots": _sunspots,
    "co2": _co2,
    "elnino": _elnino,
    "macrodata": _macrodata,
    "elec_equip": _elec_equip,
    "air_passengers": _air_passengers,
    "nile": _nile,
    "interest_inflation": _interest_inflation,
    "fertility": _fertility,
}

COLLECTIONS: dict[str, tuple[str, ...]] = {
    "default": ("sunspots", "co2", "elnino", "macrodata", "elec_equip", "air_passengers"),
    "short": ("nile", "interest_inflation", "fertility"),
}
COLLECTIONS["all"] = COLLECTIONS["default"] + COLLECTIONS["short"]


def dataset_names() -> tuple[str, ...]:
    """Names of every known dataset."""
    return tuple(_LOADERS)


@functools.cache
def load_dataset(name: str) -> Dataset:
    """Load one dataset by name (cached; its arrays are read-only)."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        known = ", ".join(sorted(_LOADERS))
        raise DatasetUnavailableError(f"unknown dataset {name!r}; known: {known}") from None
    return loader()


def resolve_names(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Expand a comma-separated (or listed) mix of collection and dataset names, keeping order."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for raw in parts:
        part = raw.strip()
        if not part:
            continue
        expanded = COLLECTIONS.get(part, (part,))
        for name in expanded:
            if name not in _LOADERS:
                raise DatasetUnavailableError(f"unknown dataset or collection {name!r}; known: {_known_names()}")
            if name not in names:
                names.append(name)
    if not names:
        raise DatasetUnavailableError(f"no dataset or collection named; known: {_known_names()}")
    return tuple(names)


def _known_names() -> str:
    return ", ".join([*sorted(COLLECTIONS), *sorted(_LOADERS)])


def load_collection(spec: str | list[str] | tuple[str, ...]) -> list[Dataset]:
    """Load the datasets named by a collection or a comma-separated list of names."""
    return [load_dataset(name) for name in resolve_names(spec)]
