"""Train the shipped default model: ``python -m qortex.engine.train_default``.

1. Load the ``default`` collection of real datasets (statsmodels and statsforecast, offline).
2. Score the default configuration by walk-forward evaluation on them (the same procedure as
   ``qortex eval``, engine and majority baseline only), so the artifact carries honest
   out-of-sample metrics.
3. Fit the engine on every complete series and write ``artifacts/default.npz`` and
   ``artifacts/default.json`` with those metrics and the lineage of the training data: for each
   dataset its name, source, package and version, number of series and points, and a SHA-256 of
   its values, plus one SHA-256 over all of them.

Everything is seeded by :class:`EngineConfig` and runs with one BLAS thread, so two runs on the same
package versions produce the same parameters (the same ``model_hash``; the metadata's ``created_at``,
and so its ``content_hash``, differ).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from qortex.engine import EngineConfig, Predictor
from qortex.engine.datasets import Dataset, load_collection
from qortex.engine.evaluation import MEAN_ROW, POOLED_ROW, EvalConfig, evaluate

TRAINING_COLLECTION = "default"
DEFAULT_HORIZON = 1
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
ARTIFACT_PATH = ARTIFACT_DIR / "default.npz"


def default_config() -> EngineConfig:
    """The configuration of the shipped model."""
    return EngineConfig(seed=0)


def lineage(datasets: Sequence[Dataset], *, horizon: int, config: EngineConfig) -> dict[str, Any]:
    """Where the training data came from, with content hashes that pin it down exactly."""
    combined = hashlib.sha256()
    entries = []
    for ds in datasets:
        digest = ds.sha256()
        combined.update(f"{ds.name}:{digest}\n".encode())
        entries.append(
            {
                "name": ds.name,
                "source": ds.source,
                "package": ds.package,
                "package_version": ds.package_version,
                "frequency": ds.frequency,
                "series": ds.series_names,
                "n_series": len(ds.series),
                "n_points": ds.n_points,
                "sha256": digest,
            }
        )
    return {
        "command": "python -m qortex.engine.train_default",
        "collection": TRAINING_COLLECTION,
        "datasets": entries,
        "n_series": sum(e["n_series"] for e in entries),
        "n_points": sum(e["n_points"] for e in entries),
        "training_data_sha256": combined.hexdigest(),
        "horizon": horizon,
        "window": config.window,
        "seed": config.seed,
    }


def walk_forward_metrics(
    datasets: Sequence[Dataset], *, horizon: int, config: EngineConfig, folds: int = 4
) -> dict[str, Any]:
    """Out-of-sample scores of ``config`` (and of the majority baseline) by walk-forward evaluation."""
    eval_config = EvalConfig(
        folds=folds, horizon=horizon, window=config.window, methods=("engine", "majority"), engine=config
    )
    report = evaluate(datasets, eval_config)

    def clean(scores: dict[str, float]) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else round(v, 6)) for k, v in scores.items()}

    engine = report.row(MEAN_ROW, "engine")
    return {
        "evaluation": f"walk-forward, {folds} expanding folds over the last 50% of each series",
        "horizon": horizon,
        "n": engine.n,
        "mean_over_datasets": clean(engine.scores),
        "majority_baseline_mean_over_datasets": clean(report.row(MEAN_ROW, "majority").scores),
        "pooled": clean(report.row(POOLED_ROW, "engine").scores),
        "per_dataset": {name: clean(report.row(name, "engine").scores) for name in report.datasets},
    }


def train_default(
    out: Path = ARTIFACT_PATH, *, horizon: int = DEFAULT_HORIZON, config: EngineConfig | None = None
) -> Predictor:
    """Evaluate, train and save the default model; returns the fitted predictor."""
    config = config or default_config()
    datasets = load_collection(TRAINING_COLLECTION)
    metrics = walk_forward_metrics(datasets, horizon=horizon, config=config)
    series = [s for ds in datasets for s in ds.series]
    with threadpool_limits(limits=1):
        predictor = Predictor(config).fit(
            series, horizon=horizon, lineage=lineage(datasets, horizon=horizon, config=config)
        )
    predictor.set_metrics(metrics)
    out.parent.mkdir(parents=True, exist_ok=True)
    predictor.save(out)
    return predictor


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m qortex.engine.train_default", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=ARTIFACT_PATH, help="artifact path (.npz; .json is written beside it)"
    )
    parser.add_argument("--horizon", type=int, default=DEFAULT_HORIZON)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        predictor = train_default(args.out, horizon=args.horizon, config=replace(default_config()))
    except Exception as exc:  # one clear line, no traceback, for a command-line tool
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mean = predictor.metadata["metrics"]["mean_over_datasets"]
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f}s; walk-forward mean: {mean}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
