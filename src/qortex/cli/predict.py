"""`qortex predict FILE`: runs the engine locally over a CSV or JSON file of series."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from rich.progress import Progress

from qortex.cli._common import console, errors, fail, one_line_errors
from qortex.engine import InvalidSeriesError, PredictionResult, Predictor
from qortex.engine.validation import validate_series
from qortex.web.routing import refuse_duplicate_keys

CHUNK = 256
JSON_SHAPES = "a JSON file holds a list of series, a list of {source, values}, or {name: values}"
CSV_COLUMNS = ("source", "direction", "confidence", "probability_up", "top_factors", "patterns")
OUTPUT_FORMATS = (".csv", ".json")


def _series(name: str, values: Any, index: int) -> tuple[str, np.ndarray]:
    """The engine's own checks, before any model is loaded, naming the series as the file does."""
    try:
        return name, validate_series(values, index=index)
    except InvalidSeriesError as error:
        raise ValueError(f"{error} ({name!r})") from None


def _from_json(text: str) -> list[tuple[str, np.ndarray]]:
    data = orjson.loads(text)
    try:
        refuse_duplicate_keys(text.encode(), data)
    except json.JSONDecodeError as error:  # else two series under one name would be one, silently
        hint = "; give each series its own name" if error.msg.startswith("duplicate key") else ""
        raise ValueError(f"{error.msg} in the JSON{hint}") from None
    if isinstance(data, dict):
        return [_series(str(name), values, index) for index, (name, values) in enumerate(data.items())]
    if isinstance(data, list):
        if data and all(isinstance(item, int | float) and not isinstance(item, bool) for item in data):
            # Else each number would be refused as a series "not one-dimensional", which it is not.
            raise ValueError(f"{JSON_SHAPES}; a list of numbers is one series: wrap it in a list, [[...]]")
        series = []
        seen: set[str] = set()
        for index, item in enumerate(data):
            if isinstance(item, dict):
                source = item.get("source")  # null, as a JSON writer puts a missing field, is no name
                name = f"series-{index}" if source is None else str(source)
                if "values" not in item:  # else only "('values')", the KeyError's words
                    raise ValueError(f'series {index} ({name!r}) has no "values"; {JSON_SHAPES}')
                values = item["values"]
            else:
                name, values = f"series-{index}", item
            # As for a CSV header: two results under one name (a source given twice, or one that an unnamed
            # series is named by position) could not be told apart.
            if name in seen:
                raise ValueError(f"series {index}: the name {name!r} is taken by an earlier series; give each its own")
            seen.add(name)
            series.append(_series(name, values, index))
        return series
    raise ValueError(JSON_SHAPES)


def _from_csv(text: str) -> list[tuple[str, np.ndarray]]:
    """Each column is one series, oldest value first; empty cells at a column's end are allowed."""
    reader = csv.reader(io.StringIO(text))
    rows: list[list[str]] = []
    begins = 1  # the line the row being read begins on
    try:
        for row in reader:
            rows.append(row)
            begins = reader.line_num + 1
    except csv.Error as error:
        # A cell past the csv module's limit is most often a quote left open, which takes in every line after it.
        raise ValueError(f"line {begins}: {error}; is a quote left open there?") from None
    if len(rows) < 2:
        raise ValueError("a CSV file needs a header row naming each series, then one row per time step")
    body = rows[1:]
    # An empty header names its series by position, which must not clash with a header either.
    names = [name.strip() or f"series-{column}" for column, name in enumerate(rows[0])]
    seen: set[str] = set()
    for name in names:
        if name in seen:  # two results under one name could not be told apart
            raise ValueError(f"the header names {name!r} twice; give each series its own name")
        seen.add(name)
    for line, row in enumerate(body, start=2):
        if any(cell.strip() for cell in row[len(names) :]):
            raise ValueError(f"line {line} has {len(row)} cells but the header names {len(names)} series")
    series = []
    for column, name in enumerate(names):
        cells = [row[column].strip() if column < len(row) else "" for row in body]
        while cells and not cells[-1]:
            cells.pop()
        if not cells and not rows[0][column].strip():
            # No header and no value: a spreadsheet's empty column (one past the last used, or a spacer), no series.
            continue
        values = []
        for line, cell in enumerate(cells, start=2):
            try:
                values.append(float(cell))
            except ValueError:
                # Cut short: a quote left open makes one cell of up to the rest of the file.
                shown = repr(cell) if len(cell) <= 40 else f"{cell[:40]!r}..."
                raise ValueError(f"column {name!r}, line {line}: {shown} is not a number") from None
        series.append(_series(name, values, column))
    return series


def read_series(path: Path) -> list[tuple[str, np.ndarray]]:
    # utf-8-sig: a byte-order mark (as spreadsheets write one) is not part of the first series' name.
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x})") from None
    try:
        return _from_json(text) if path.suffix.lower() == ".json" else _from_csv(text)
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a file of series ({error})") from None


def _row(source: str, result: PredictionResult) -> dict[str, Any]:
    return {"source": source, **result.to_dict()}


def _write(rows: list[dict[str, Any]], output: Path | None, as_csv: bool) -> None:
    if not as_csv:
        data = orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            factors = "; ".join(f"{f['name']} {f['weight']:+.3f}" for f in row["factors"][:3])
            patterns = "; ".join(f"{p['type']} {p['strength']:.2f}" for p in row["patterns"])
            writer.writerow(
                [
                    row["source"],
                    row["direction"],
                    f"{row['confidence']:.4f}",
                    f"{row['probability_up']:.4f}",
                    factors,
                    patterns,
                ]
            )
        data = buffer.getvalue()
    if output is None:
        typer.echo(data)
    else:
        _replace(output, data)
        console.print(f"Wrote {len(rows)} predictions to {output}.")


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM as an exit that unwinds (status 143), like Ctrl-C, so the file beside the output is removed."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # only the main thread sets handlers; None: one set outside Python, which cannot be put back
        return

    def stop(signum: int, _: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _replace(output: Path, data: str) -> None:
    """Writes a file beside the output, then renames it over the output: a write that fails part way (a full
    disk, Ctrl-C, SIGTERM) leaves the output as it was, never a part of the predictions, and nothing beside it."""
    target = output.resolve()  # through a link, as writing to it would: the link stays
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    with _terminate_as_exit():
        try:
            # O_EXCL: never another's file; 0o666 less the umask, the permissions a plain write gives.
            with open(
                os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8", newline=""
            ) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise ValueError(f"cannot write {output}: {error.strerror or error}") from None
            raise


@one_line_errors
def predict(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV (a column per series) or JSON")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (.csv or .json); JSON on stdout if unset")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="A model artifact (.npz); the shipped default if unset")] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Steps ahead; must match the model")] = 1,
) -> None:
    """Predicts every series in FILE with the engine, locally (no server needed)."""
    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        # Else JSON, under a name that says otherwise (results.tsv, results.txt).
        raise fail(f"cannot tell the format of {output}: name the output .csv or .json")
    if output is not None and output.is_dir():
        raise fail(f"cannot write {output}: it is a directory")
    if output is not None and not os.access(output.parent, os.W_OK | os.X_OK):
        # Checked now, not after predicting every series.
        raise fail(f"cannot write {output}: {output.parent} is not a writable directory")
    if output is not None and output.exists() and output.samefile(file):
        # Through a link or another spelling of the path too: the predictions would replace the series.
        raise fail(f"{output} is the input file: write the predictions to another file")
    series = read_series(file)
    if not series:
        raise fail(f"{file} holds no series")
    predictor = Predictor.load(model) if model else Predictor.load_default()
    if horizon != predictor.metadata["horizon"]:
        raise fail(f"the model predicts {predictor.metadata['horizon']} step(s) ahead, not {horizon}")
    rows: list[dict[str, Any]] = []
    # On stderr: standard output holds the predictions alone, whether written there or not.
    with Progress(console=errors, transient=True, disable=len(series) <= CHUNK) as progress:
        task = progress.add_task("Predicting", total=len(series))
        for start in range(0, len(series), CHUNK):
            chunk = series[start : start + CHUNK]
            results = predictor.predict_batch([values for _, values in chunk], horizon=horizon)
            rows += [_row(name, result) for (name, _), result in zip(chunk, results, strict=True)]
            progress.advance(task, len(chunk))
    _write(rows, output, as_csv=(output is not None and output.suffix.lower() == ".csv"))
