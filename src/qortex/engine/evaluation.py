"""Walk-forward evaluation of the engine, its ablations and the baselines on real series.

Splits. For each series, the forecast origins ``t`` (the last index of a window, with a non-tied
move ``series[t + h] != series[t]``) that have a full window behind them are listed in time order.
Origins whose value or target was interpolated (``Dataset.filled``) are left out: the
interpolation drew them from later values. The last ``test_fraction`` of the origins is cut into
``folds`` contiguous blocks. For the fold whose first test origin is ``a``, the training data of
that series is the prefix ``series[: a + 1]``: everything known at the first forecast of the fold,
so every training target is at or before ``a`` and every test target is after it. Folds expand:
fold ``k + 1`` trains on more history than fold ``k``. The series of a dataset share a calendar
(index ``i`` is the same date in each of macrodata's columns), but ties make their folds start at
different indices, so every series of a dataset is cut at the fold's earliest first origin over
its series: no model sees a value of a dataset's test period. Different datasets are not cut at
one calendar date (they cover different years), so a global model may be trained on another
dataset's values from the years a test block forecasts; docs/engine.md section 4 lists where.

Models. ``global`` models (the engine, its ablations and the lagged-value logistic regression) are
fitted once per fold on the training prefixes of every series of every dataset being evaluated;
``series`` models (majority, persistence, ETS) once per series and fold. All methods see the same
splits and are scored on the same test origins.

Scores. Per dataset, the forecasts of every fold and series are pooled and scored with
:func:`qortex.engine.metrics.score_all`; the ``mean`` row averages each metric over datasets
(each dataset counts once, however many series or points it has); the ``pooled`` row scores all
forecasts together. ECE is biased upwards on small samples (a perfectly calibrated forecaster with
probabilities spread over 0.15-0.85 scores about 0.16 at n = 40 and 0.03 at n = 1,000), so the
pooled row is the better check of calibration. Everything is seeded and runs with one BLAS thread
(the readout's sums otherwise change in the last bits with the thread count), so two runs give the
same table on any machine with the same package versions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from qortex.engine import EngineConfig, Predictor
from qortex.engine.baselines import (
    DirectionModel,
    ETSDirection,
    MajorityClass,
    Persistence,
    Scope,
    WindowLogistic,
    direction_pairs,
)
from qortex.engine.datasets import Dataset, load_collection
from qortex.engine.metrics import METRIC_NAMES, score_all

FloatArray = npt.NDArray[np.float64]
ProgressHook = Callable[[int, int, str], None]
"""Called as ``progress(done, total, label)`` after each (fold, method) step."""

MEAN_ROW = "mean"
POOLED_ROW = "pooled"


class EngineModel:
    """The engine's :class:`Predictor` behind the :class:`DirectionModel` contract."""

    scope: Scope = "global"

    def __init__(self, config: EngineConfig, name: str = "engine") -> None:
        self.config = config
        self.name = name
        self.predictor_: Predictor | None = None

    def fit(self, series: Sequence[FloatArray], horizon: int) -> EngineModel:
        """Fit one predictor on the sliding windows of every training series.

        ``Predictor.fit`` holds out the last windows of each series to calibrate, so calibration
        data come from every series rather than from whichever happens to be listed last.
        """
        usable = [s for s in series if s.size >= self.config.window + horizon]
        if not usable:
            raise ValueError("no training window: every series is shorter than window + horizon")
        self.predictor_ = Predictor(self.config).fit(usable, horizon=horizon)
        return self

    def predict_proba(self, histories: Sequence[FloatArray]) -> FloatArray:
        """Probability of up from the last ``window`` values of each history."""
        if self.predictor_ is None:
            raise RuntimeError("fit the model before predicting")
        window = self.config.window
        p = self.predictor_.predict_proba([np.asarray(h[-window:], dtype=np.float64) for h in histories])
        return np.asarray(p, dtype=np.float64)


@dataclass(frozen=True)
class Method:
    """A named way to build a fresh model; ``build`` gets the dataset's season length."""

    name: str
    scope: Scope
    build: Callable[[int], DirectionModel]


def standard_methods(engine: EngineConfig) -> dict[str, Method]:
    """The engine, its two ablations and the four baselines, keyed by name."""
    readout_only = replace(engine, use_reservoir=False, use_quantum=False, use_patterns=False)
    return {
        "engine": Method("engine", "global", lambda _m: EngineModel(engine, "engine")),
        "engine_no_quantum": Method(
            "engine_no_quantum",
            "global",
            lambda _m: EngineModel(replace(engine, use_quantum=False), "engine_no_quantum"),
        ),
        "engine_no_reservoir": Method(
            "engine_no_reservoir",
            "global",
            lambda _m: EngineModel(replace(engine, use_reservoir=False), "engine_no_reservoir"),
        ),
        "logistic_lags": Method("logistic_lags", "global", lambda _m: EngineModel(readout_only, "logistic_lags")),
        "window_logistic": Method("window_logistic", "global", lambda _m: WindowLogistic(engine.window)),
        "ets": Method("ets", "series", lambda m: ETSDirection(season_length=m)),
        "persistence": Method("persistence", "series", lambda _m: Persistence()),
        "majority": Method("majority", "series", lambda _m: MajorityClass()),
    }


DEFAULT_METHODS: tuple[str, ...] = tuple(standard_methods(EngineConfig()))


@dataclass(frozen=True)
class EvalConfig:
    """How to split and what to compare."""

    folds: int = 4
    horizon: int = 1
    window: int = 64
    test_fraction: float = 0.5
    min_train_windows: int = 20
    methods: tuple[str, ...] = DEFAULT_METHODS
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if self.folds < 1:
            raise ValueError("folds must be at least 1")
        if self.horizon < 1:
            raise ValueError("horizon must be at least 1")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must be in (0, 1)")
        if self.min_train_windows < 1:
            raise ValueError("min_train_windows must be at least 1")
        if not self.methods:
            raise ValueError("name at least one method")
        unknown = sorted(set(self.methods) - set(DEFAULT_METHODS))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(DEFAULT_METHODS)}")

    def engine_config(self) -> EngineConfig:
        """The engine configuration with this evaluation's window."""
        return replace(self.engine, window=self.window)


def override_config(base: EngineConfig, assignments: Sequence[str]) -> EngineConfig:
    """Apply ``field=value`` overrides to an engine configuration, converting to each field's type."""
    current = base.to_dict()
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in current:
            raise ValueError(f"bad override {item!r}: expected field=value with a field of EngineConfig")
        kind = type(current[key])
        try:
            if kind is bool:
                if raw.lower() not in {"true", "false", "1", "0"}:
                    raise ValueError(raw)
                changes[key] = raw.lower() in {"true", "1"}
            else:
                changes[key] = kind(raw)
        except ValueError:
            raise ValueError(f"bad override {item!r}: {key} takes a {kind.__name__}") from None
    return replace(base, **changes)


@dataclass(frozen=True)
class Fold:
    """One series' part in one fold: train on ``series[:train_end]``, forecast at ``test_origins``."""

    dataset: str
    series_index: int
    fold: int
    train_end: int
    test_origins: npt.NDArray[np.int64]


def scored_origins(
    series: FloatArray, *, config: EvalConfig, filled: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.int64]:
    """The last ``test_fraction`` of a series' forecast origins, in time order.

    An origin has a full window behind it and a move (not a tie) at its target; origins whose value or
    target is ``filled`` (interpolated from later values) are not forecast.
    """
    origins, _ = direction_pairs(series, config.horizon, first_origin=config.window - 1)
    origins_i = origins.astype(np.int64)
    if filled is not None:
        origins_i = origins_i[~filled[origins_i] & ~filled[origins_i + config.horizon]]
    n_test = math.floor(origins_i.size * config.test_fraction)
    return origins_i[origins_i.size - n_test :]


def plan_folds(
    series: FloatArray,
    *,
    dataset: str,
    series_index: int,
    config: EvalConfig,
    filled: npt.NDArray[np.bool_] | None = None,
) -> list[Fold]:
    """Expanding-window folds of one series; folds without enough training windows are left out."""
    test = scored_origins(series, config=config, filled=filled)
    if test.size < config.folds:
        return []
    plans: list[Fold] = []
    for k, block in enumerate(np.array_split(test, config.folds)):
        train_end = int(block[0]) + 1
        train_windows = train_end - config.window - config.horizon + 1
        if train_windows < config.min_train_windows:
            continue
        plans.append(Fold(dataset, series_index, k, train_end, block))
    return plans


def align_training(plans: Sequence[Fold]) -> list[Fold]:
    """Ends the training prefixes of a dataset's fold at the earliest first test origin of its series.

    Ties make each series' folds start at its own index; a global model trained on one series up to its
    own first origin would see values from the test period of another series of the same calendar (up
    to 4 quarters in macrodata). Test origins are unchanged.
    """
    cut: dict[tuple[str, int], int] = {}
    for p in plans:
        key = (p.dataset, p.fold)
        cut[key] = min(cut.get(key, p.train_end), p.train_end)
    return [replace(p, train_end=cut[(p.dataset, p.fold)]) for p in plans]


@dataclass
class MethodScores:
    """Pooled scores of one method on one dataset (or the mean over datasets)."""

    dataset: str
    method: str
    n: int
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; undefined scores become ``None``."""
        return {
            "dataset": self.dataset,
            "method": self.method,
            "n": self.n,
            **{k: (None if math.isnan(v) else round(v, 6)) for k, v in self.scores.items()},
        }


@dataclass
class EvaluationReport:
    """The evaluation table, what was skipped and why, and the settings that produced it."""

    config: EvalConfig
    datasets: list[str]
    rows: list[MethodScores]
    skipped: list[str]

    def row(self, dataset: str, method: str) -> MethodScores:
        """The scores of ``method`` on ``dataset`` (use ``MEAN_ROW`` for the mean over datasets)."""
        for r in self.rows:
            if r.dataset == dataset and r.method == method:
                return r
        raise KeyError((dataset, method))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        cfg = dataclasses.asdict(self.config)
        cfg["methods"] = list(self.config.methods)
        return {
            "config": cfg,
            "datasets": self.datasets,
            "metrics": list(METRIC_NAMES),
            "rows": [r.to_dict() for r in self.rows],
            "skipped": self.skipped,
        }


def _skip_reason(series: FloatArray, n_planned: int, config: EvalConfig, filled: npt.NDArray[np.bool_] | None) -> str:
    """Why ``config.folds - n_planned`` folds of a series were left out, in the words of the CLI."""
    n_skipped = f"{config.folds - n_planned} of {config.folds} folds skipped"
    n_test = scored_origins(series, config=config, filled=filled).size
    if n_test < config.folds:
        # Ties (a value equal to the one h steps before) are not forecast, so length alone does not say it.
        return (
            f"{n_skipped} ({series.size} values give {n_test} forecast origins with a move in the last "
            f"{config.test_fraction:.0%}, fewer than one per fold; window {config.window}, horizon {config.horizon})"
        )
    return (
        f"{n_skipped} ({series.size} values is too short for {config.min_train_windows} training windows of "
        f"{config.window} values before each fold, horizon {config.horizon})"
    )


def _mean_rows(rows: list[MethodScores], methods: Sequence[str]) -> list[MethodScores]:
    out = []
    for method in methods:
        mine = [r for r in rows if r.method == method]
        if not mine:
            continue
        scores = {}
        for name in METRIC_NAMES:
            values = [r.scores[name] for r in mine]
            # Undefined on one dataset (no forecast reached the coverage threshold, one class only) leaves
            # the mean undefined: a mean over the other datasets would not compare with other methods'.
            scores[name] = math.nan if any(math.isnan(v) for v in values) else float(np.mean(values))
        out.append(MethodScores(MEAN_ROW, method, sum(r.n for r in mine), scores))
    return out


def evaluate(
    datasets: Sequence[Dataset],
    config: EvalConfig | None = None,
    *,
    methods: Sequence[Method] | None = None,
    progress: ProgressHook | None = None,
) -> EvaluationReport:
    """Walk-forward evaluation of ``methods`` (default: ``config.methods``) on ``datasets``."""
    with threadpool_limits(limits=1):
        return _evaluate(datasets, config, methods=methods, progress=progress)


def _evaluate(
    datasets: Sequence[Dataset],
    config: EvalConfig | None,
    *,
    methods: Sequence[Method] | None,
    progress: ProgressHook | None,
) -> EvaluationReport:
    config = config or EvalConfig()
    if methods is None:
        available = standard_methods(config.engine_config())
        methods = [available[name] for name in config.methods]
    if not methods:
        raise ValueError("name at least one method")
    horizon = config.horizon

    plans: list[Fold] = []
    skipped: list[str] = []
    series_of: dict[tuple[str, int], FloatArray] = {}
    season_of: dict[str, int] = {}
    for ds in datasets:
        season_of[ds.name] = ds.season_length
        for i, s in enumerate(ds.series):
            series_of[(ds.name, i)] = s
            filled = ds.filled[i] if ds.filled else None
            mine = plan_folds(s, dataset=ds.name, series_index=i, config=config, filled=filled)
            label = ds.series_names[i] if i < len(ds.series_names) else str(i)
            if len(mine) < config.folds:
                skipped.append(f"{ds.name}/{label}: {_skip_reason(s, len(mine), config, filled)}")
            plans.extend(mine)
    plans = align_training(plans)

    forecasts: dict[tuple[str, str], list[FloatArray]] = {}
    fold_ids = sorted({p.fold for p in plans})
    total = len(fold_ids) * len(methods)
    done = 0
    for k in fold_ids:
        fold_plans = [p for p in plans if p.fold == k]
        for method in methods:
            if method.scope == "global":
                model = method.build(1).fit(
                    [series_of[(p.dataset, p.series_index)][: p.train_end] for p in fold_plans], horizon
                )
                for p in fold_plans:
                    s = series_of[(p.dataset, p.series_index)]
                    probs = model.predict_proba([s[: t + 1] for t in p.test_origins])
                    forecasts.setdefault((p.dataset, method.name), []).append(probs)
            else:
                for p in fold_plans:
                    s = series_of[(p.dataset, p.series_index)]
                    local = method.build(season_of[p.dataset]).fit([s[: p.train_end]], horizon)
                    probs = local.predict_proba([s[: t + 1] for t in p.test_origins])
                    forecasts.setdefault((p.dataset, method.name), []).append(probs)
            done += 1
            if progress is not None:
                progress(done, total, f"fold {k + 1}/{config.folds} {method.name}")

    # Forecasts were stored fold by fold, in plan order within a fold; outcomes follow the same order.
    ordered: dict[str, list[FloatArray]] = {}
    for k in fold_ids:
        for p in plans:
            if p.fold == k:
                s = series_of[(p.dataset, p.series_index)]
                change = s[p.test_origins + horizon] - s[p.test_origins]
                ordered.setdefault(p.dataset, []).append((change > 0).astype(np.float64))

    rows: list[MethodScores] = []
    names = [ds.name for ds in datasets if ds.name in ordered]
    for name in names:
        y = np.concatenate(ordered[name])
        for method in methods:
            p_up = np.concatenate(forecasts[(name, method.name)])
            rows.append(MethodScores(name, method.name, int(y.size), score_all(y, p_up)))
    rows.extend(_mean_rows(rows, [m.name for m in methods]))
    if names:
        y_all = np.concatenate([y for name in names for y in ordered[name]])
        for method in methods:
            p_all = np.concatenate([p for name in names for p in forecasts[(name, method.name)]])
            rows.append(MethodScores(POOLED_ROW, method.name, int(y_all.size), score_all(y_all, p_all)))
    return EvaluationReport(config=config, datasets=names, rows=rows, skipped=skipped)


def evaluate_collection(
    spec: str, config: EvalConfig | None = None, *, progress: ProgressHook | None = None
) -> EvaluationReport:
    """Evaluate the datasets named by a collection or a comma-separated list of names."""
    return evaluate(load_collection(spec), config, progress=progress)


def evaluate_quick(
    spec: str = "sunspots,nile",
    *,
    window: int = 16,
    folds: int = 2,
    methods: tuple[str, ...] = ("engine", "majority", "persistence"),
    engine: EngineConfig | None = None,
    progress: ProgressHook | None = None,
) -> EvaluationReport:
    """A small, fast evaluation (short window, two folds, few methods) for tests and smoke checks."""
    base = engine or EngineConfig()
    config = EvalConfig(folds=folds, window=window, methods=methods, engine=replace(base, window=window))
    return evaluate(load_collection(spec), config, progress=progress)
