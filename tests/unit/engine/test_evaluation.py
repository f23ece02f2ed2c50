"""Walk-forward evaluation: fold boundaries, no look-ahead, determinism and the shape of the table."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from qortex.cli.eval import eval_command
from qortex.engine import EngineConfig
from qortex.engine.baselines import MajorityClass, Scope
from qortex.engine.datasets import Dataset
from qortex.engine.evaluation import (
    MEAN_ROW,
    POOLED_ROW,
    EvalConfig,
    EvaluationReport,
    Method,
    MethodScores,
    align_training,
    evaluate,
    evaluate_quick,
    plan_folds,
)
from qortex.engine.metrics import METRIC_NAMES

FAST_ENGINE = EngineConfig(window=16, n_neurons=32, n_qubits=4, n_quantum_layers=1)


def _synthetic(name: str, series: list[np.ndarray]) -> Dataset:
    return Dataset(name, "synthetic", series, "none", "test data", series_names=[str(i) for i in range(len(series))])


class Spy:
    """Records what each fit and predict call was shown; predicts 0.5."""

    def __init__(self, log: list[tuple[str, int]], scope: Scope) -> None:
        self.log = log
        self.name = "spy"
        self.scope = scope

    def fit(self, series: Sequence[np.ndarray], horizon: int) -> Spy:
        self.log.extend(("fit", int(s.size)) for s in series)
        return self

    def predict_proba(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        self.log.extend(("predict", int(h.size)) for h in histories)
        return np.full(len(histories), 0.5)


def test_folds_expand_and_cover_the_last_half_in_order() -> None:
    s = np.cumsum(np.random.default_rng(0).normal(size=400)) + 100
    config = EvalConfig(folds=4, window=32, horizon=3)
    folds = plan_folds(s, dataset="d", series_index=0, config=config)
    assert [f.fold for f in folds] == [0, 1, 2, 3]
    origins = np.concatenate([f.test_origins for f in folds])
    assert np.all(np.diff(origins) > 0), "test blocks are contiguous, ordered and disjoint"
    assert origins[-1] == s.size - 1 - 3, "the last origin still has its target inside the series"
    assert origins[0] >= s.size // 2 - 32
    for a, b in itertools.pairwise(folds):
        assert a.train_end < b.train_end, "each fold trains on more history"
    for f in folds:
        assert f.train_end == f.test_origins[0] + 1, "training data ends at the first forecast origin"


def test_short_series_are_skipped_with_a_reason() -> None:
    config = EvalConfig(folds=4, window=64, methods=("majority",))
    report = evaluate([_synthetic("tiny", [np.arange(80.0)])], config)
    assert report.rows == []
    assert report.skipped and "tiny/0" in report.skipped[0] and "too short" in report.skipped[0]


def test_a_long_series_that_rarely_moves_is_skipped_for_its_few_moves_not_its_length() -> None:
    moves = np.zeros(300)
    moves[[40, 90, 150, 200, 250, 280]] = 1.0
    config = EvalConfig(folds=4, window=16, methods=("majority",))
    report = evaluate([_synthetic("steps", [np.cumsum(moves)])], config)
    assert report.rows == []
    [reason] = report.skipped
    assert "too short" not in reason
    assert "300 values give 3 forecast origins with a move in the last 50%, fewer than one per fold" in reason


@pytest.mark.parametrize("scope", ["global", "series"])
def test_no_model_ever_sees_a_test_target(scope: Scope) -> None:
    rng = np.random.default_rng(1)
    data = [
        _synthetic("a", [rng.normal(size=300), rng.normal(size=250)]),
        _synthetic("b", [rng.normal(size=200)]),
    ]
    config = EvalConfig(folds=3, window=16, horizon=2, methods=("majority",))
    log: list[tuple[str, int]] = []

    def build(_season: int) -> Spy:
        return Spy(log, scope)

    evaluate(data, config, methods=[Method("spy", scope, build)])
    if scope == "series":
        # one fit per series and fold, then its forecasts: every history reaches at least as far
        # as the training prefix, and never further than its own origin (checked below)
        last_fit = None
        for kind, size in log:
            if kind == "fit":
                last_fit = size
            else:
                assert last_fit is not None and size >= last_fit
    # The training prefixes are exactly the planned ones (each ends at its dataset's earliest first origin
    # of the fold) and the history of origin t has t + 1 values, so its target at t + h is never shown.
    plans = {
        (ds.name, i): plan_folds(s, dataset=ds.name, series_index=i, config=config)
        for ds in data
        for i, s in enumerate(ds.series)
    }
    aligned = align_training([f for fl in plans.values() for f in fl])
    assert all(a.train_end <= f.train_end for a, f in zip(aligned, itertools.chain(*plans.values()), strict=True))
    expected_train = sorted(f.train_end for f in aligned)
    seen_train = sorted(size for kind, size in log if kind == "fit")
    assert seen_train == expected_train
    expected_hist = sorted(int(t) + 1 for fl in plans.values() for f in fl for t in f.test_origins)
    assert sorted(size for kind, size in log if kind == "predict") == expected_hist


def test_engine_cannot_predict_a_random_walk_out_of_sample() -> None:
    # Increments are independent of the past, so an honest out-of-sample score is a coin flip. A
    # model trained on its own test windows could memorise them and score well above 0.5.
    rng = np.random.default_rng(2)
    walks = [np.cumsum(rng.normal(size=500)) + 50 for _ in range(3)]
    config = EvalConfig(folds=2, window=16, methods=("engine",), engine=FAST_ENGINE)
    report = evaluate([_synthetic("walk", walks)], config)
    row = report.row("walk", "engine")
    assert row.n > 600
    assert 0.43 < row.scores["accuracy"] < 0.57
    assert row.scores["brier"] < 0.27


def test_engine_learns_a_predictable_series() -> None:
    t = np.arange(600)
    waves = [10 + np.sin(2 * np.pi * t / p) for p in (9, 13, 17)]
    config = EvalConfig(folds=2, window=16, methods=("engine", "majority"), engine=FAST_ENGINE)
    report = evaluate([_synthetic("waves", waves)], config)
    assert report.row("waves", "engine").scores["accuracy"] > 0.9
    assert report.row("waves", "majority").scores["accuracy"] < 0.6


def test_quick_evaluation_is_deterministic_and_has_every_metric() -> None:
    calls: list[tuple[int, int, str]] = []
    kwargs = {"methods": ("engine", "majority", "persistence"), "engine": FAST_ENGINE}
    first = evaluate_quick("sunspots", progress=lambda d, t, label: calls.append((d, t, label)), **kwargs)
    second = evaluate_quick("sunspots", **kwargs)
    assert first.to_dict() == second.to_dict()
    assert {(r.dataset, r.method) for r in first.rows} == {
        (d, m) for d in ("sunspots", MEAN_ROW, POOLED_ROW) for m in ("engine", "majority", "persistence")
    }
    assert set(first.rows[0].scores) == set(METRIC_NAMES)
    assert calls[-1][0] == calls[-1][1] == 2 * 3, "one progress step per fold and method"
    assert all(0.0 <= r.scores["accuracy"] <= 1.0 for r in first.rows)


def majority_on_up_and_walk() -> tuple[MethodScores, MethodScores, MethodScores, EvaluationReport]:
    """The majority baseline on a series that always rises and on a random walk: its up, walk and mean rows."""
    rng = np.random.default_rng(3)
    data = [
        _synthetic("up", [np.cumsum(rng.random(300))]),
        _synthetic("walk", [np.cumsum(rng.normal(size=300))]),
    ]
    report = evaluate(data, EvalConfig(folds=2, window=16, methods=("majority",)))
    up, walk, mean = (report.row(d, "majority") for d in ("up", "walk", MEAN_ROW))
    return up, walk, mean, report


def test_mean_row_averages_datasets_equally() -> None:
    up, walk, mean, report = majority_on_up_and_walk()
    assert mean.scores["accuracy"] == pytest.approx((up.scores["accuracy"] + walk.scores["accuracy"]) / 2)
    assert mean.n == up.n + walk.n
    assert up.scores["accuracy"] == 1.0
    pooled = report.row(POOLED_ROW, "majority")
    assert pooled.n == mean.n
    assert pooled.scores["accuracy"] == pytest.approx(
        (up.scores["accuracy"] * up.n + walk.scores["accuracy"] * walk.n) / mean.n
    )


def test_majority_baseline_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(4)
    s = np.cumsum(rng.normal(0.1, 1.0, size=200))
    config = EvalConfig(folds=1, window=16, methods=("majority",))
    report = evaluate([_synthetic("d", [s])], config)
    (fold,) = plan_folds(s, dataset="d", series_index=0, config=config)
    p = MajorityClass().fit([s[: fold.train_end]], 1).p_up_
    y = s[fold.test_origins + 1] > s[fold.test_origins]
    assert report.row("d", "majority").scores["accuracy"] == pytest.approx(np.mean(y == (p > 0.5)))


def test_unknown_methods_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        EvalConfig(methods=("engine", "oracle"))


def test_eval_command_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(eval_command)
    out = tmp_path / "report.json"
    args = ["--datasets", "nile", "--window", "16", "--folds", "2", "--methods", "majority,persistence"]
    result = CliRunner().invoke(app, [*args, "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "persistence" in result.output
    # Not a terminal (CliRunner captures): the table is as wide as it needs, so no number is elided.
    assert "…" not in result.output
    report = json.loads(out.read_text())
    assert {r["method"] for r in report["rows"]} == {"majority", "persistence"}
    assert report["config"]["window"] == 16


@pytest.mark.parametrize(
    "args",
    [["--datasets", "nope"], ["--methods", "oracle"], ["--set", "l2=abc"], ["--set", "nonsense=1"]],
)
def test_eval_command_errors_are_one_line_with_a_non_zero_exit(args: list[str]) -> None:
    app = typer.Typer()
    app.command()(eval_command)
    result = CliRunner().invoke(app, ["--datasets", "nile", "--window", "16", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_a_mean_is_undefined_when_one_dataset_has_no_value() -> None:
    """Otherwise methods' means would average different datasets and not compare."""
    up, walk, mean, _ = majority_on_up_and_walk()
    name = next(n for n in METRIC_NAMES if n.startswith("accuracy_at"))
    assert up.scores[name] == 1.0 and np.isnan(walk.scores[name])
    assert np.isnan(mean.scores[name])
    assert mean.scores["accuracy"] == pytest.approx((up.scores["accuracy"] + walk.scores["accuracy"]) / 2)


def test_a_global_model_sees_no_value_past_any_forecast_origin_of_the_dataset() -> None:
    """Series of one dataset share a calendar (macrodata's columns); ties make their folds start at different
    indices, and a model trained on one series up to its own first origin would see the other's test period."""
    rng = np.random.default_rng(2)
    moving = np.cumsum(rng.normal(size=240)) + 50
    steps = rng.normal(size=240)
    steps[120:][rng.random(120) < 0.4] = 0.0
    stalling = np.cumsum(steps) + 50
    data = [_synthetic("a", [moving, stalling])]
    config = EvalConfig(folds=3, window=16, methods=("majority",))
    starts = {
        int(f.test_origins[0])
        for s in (moving, stalling)
        for f in plan_folds(s, dataset="a", series_index=0, config=config)
    }
    assert len(starts) > config.folds, "the two series' folds start at different indices"
    log: list[tuple[str, int]] = []
    evaluate(data, config, methods=[Method("spy", "global", lambda _m: Spy(log, "global"))])
    runs = [(kind, [size for _, size in group]) for kind, group in itertools.groupby(log, key=lambda e: e[0])]
    assert [kind for kind, _ in runs] == ["fit", "predict"] * config.folds
    for (_, trained), (_, histories) in zip(runs[::2], runs[1::2], strict=True):
        # a history of t + 1 values ends at origin t
        assert max(trained) <= min(histories), "a training prefix reaches past a forecast origin of its fold"


def test_no_forecast_starts_or_ends_on_an_interpolated_value() -> None:
    """An interpolated value is drawn from the next observed one: at a gap's last week it gives the target away."""
    s = np.cumsum(np.random.default_rng(5).normal(size=200)) + 50
    filled = np.zeros(s.size, dtype=np.bool_)
    filled[[150, 170, 171]] = True
    s[filled] = np.nan
    idx = np.arange(s.size)
    s[filled] = np.interp(idx[filled], idx[~filled], s[~filled])
    config = EvalConfig(folds=2, window=16, methods=("majority",))
    data = Dataset("gappy", "synthetic", [s], "none", "test data", series_names=["0"], filled=[filled])
    log: list[tuple[str, int]] = []
    report = evaluate([data], config, methods=[Method("spy", "series", lambda _m: Spy(log, "series"))])
    origins = np.array([size - 1 for kind, size in log if kind == "predict"])
    assert origins.size == report.row("gappy", "spy").n
    assert not filled[origins].any() and not filled[origins + 1].any()
    assert {149, 150, 169, 170, 171} & set(origins.tolist()) == set()
