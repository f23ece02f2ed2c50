"""`qortex eval`: walk-forward evaluation of the engine against the baselines on real datasets."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qortex.cli._common import print_table

if TYPE_CHECKING:
    from qortex.engine.evaluation import EvaluationReport

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "acc"),
    ("balanced_accuracy", "bal acc"),
    ("brier", "Brier"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
    ("ece_floor", "ECE floor"),
    ("auc", "AUC"),
    ("accuracy_at_0.6", "acc@0.6"),
    ("coverage_at_0.6", "cov@0.6"),
)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def render_table(report: EvaluationReport) -> Table:
    """The evaluation report as a Rich table, one row per dataset and method, means last."""
    table = Table(title="Walk-forward evaluation (pooled over folds and series)", show_lines=False)
    table.add_column("dataset", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("n", justify="right")
    for _, header in _COLUMNS:
        table.add_column(header, justify="right")
    previous = None
    for row in report.rows:
        if previous is not None and row.dataset != previous:
            table.add_section()
        previous = row.dataset
        table.add_row(row.dataset, row.method, str(row.n), *(_fmt(row.scores[key]) for key, _ in _COLUMNS))
    return table


def eval_command(
    datasets: Annotated[
        str,
        typer.Option("--datasets", help="Collection (default, short, all) or comma-separated names."),
    ] = "default",
    folds: Annotated[int, typer.Option("--folds", min=1, max=20, help="Walk-forward folds per series.")] = 4,
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=64, help="Steps ahead to forecast.")] = 1,
    window: Annotated[int, typer.Option("--window", min=8, max=4096, help="Values per input window.")] = 64,
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated methods (default: all).")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Also write the report as JSON to this path.")
    ] = None,
    engine_set: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override an EngineConfig field, e.g. --set encoder=rate (repeatable); the window is set by --window.",
        ),
    ] = None,
) -> None:
    """Score the engine, its ablations and the baselines by walk-forward evaluation on real series."""
    from qortex.engine import EngineConfig, EngineError
    from qortex.engine.datasets import DatasetUnavailableError, load_collection
    from qortex.engine.evaluation import DEFAULT_METHODS, EvalConfig, evaluate, override_config

    console = Console()
    errors = Console(stderr=True)
    try:
        # The engine and the evaluation share one window: a second way to set it would disagree with the first.
        if any(assignment.partition("=")[0].strip() == "window" for assignment in engine_set or []):
            raise ValueError("set the window with --window, not --set window=...")
        # Checked now, not after an evaluation that may take minutes.
        if json_out is not None and json_out.is_dir():
            raise ValueError(f"cannot write {json_out}: it is a directory")
        if json_out is not None and not os.access(json_out.parent, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write {json_out}: {json_out.parent} is not a writable directory")
        # Once each, in order, as datasets are: a method scored twice fails only after the whole evaluation.
        chosen = (
            tuple(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip())) if methods else DEFAULT_METHODS
        )
        engine = override_config(EngineConfig(window=window), engine_set or [])
        config = EvalConfig(folds=folds, horizon=horizon, window=window, methods=chosen, engine=engine)
        loaded = load_collection(datasets)
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        ) as bar:
            task = bar.add_task("evaluating", total=None)

            def advance(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            report = evaluate(loaded, config, progress=advance)
        if not report.rows:
            # Folds and horizon shorten what a series offers as much as the window does.
            hint = "try --window 16" if window > 16 else "try a smaller --horizon or fewer --folds"
            raise ValueError(
                f"no series in {datasets!r} is long enough for {folds} folds with window {window} and horizon "
                f"{horizon}; {hint}"
            )
        print_table(render_table(report), console)
        for reason in report.skipped:
            errors.print(f"skipped: {reason}", highlight=False, soft_wrap=True)
        if json_out is not None:
            json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}", highlight=False)
    except (DatasetUnavailableError, EngineError, ValueError, OSError, RuntimeError) as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
