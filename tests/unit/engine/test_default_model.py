"""The shipped default model: it loads, its hash verifies, its lineage is real, and it has skill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qortex.engine import ArtifactError, Predictor, metrics
from qortex.engine import artifact as artifact_io
from qortex.engine.baselines import MajorityClass, direction_pairs
from qortex.engine.datasets import COLLECTIONS, load_dataset
from qortex.engine.train_default import ARTIFACT_PATH, TRAINING_COLLECTION, lineage

# Real series the default model was never trained on (checked below against its lineage).
HELD_OUT = ("nile",)


@pytest.fixture(scope="module")
def default_model() -> Predictor:
    return Predictor.load_default()


def test_default_model_loads_and_its_content_hash_verifies(default_model: Predictor) -> None:
    npz_path, json_path = artifact_io.paths(ARTIFACT_PATH)
    meta = json.loads(json_path.read_text())
    assert artifact_io.content_hash(npz_path.read_bytes(), meta) == meta["content_hash"]
    assert default_model.metadata["model_hash"] == meta["model_hash"]
    assert npz_path.stat().st_size + json_path.stat().st_size < 2_000_000


def test_a_tampered_copy_of_the_default_model_is_refused(tmp_path: Path) -> None:
    npz_path, json_path = artifact_io.paths(ARTIFACT_PATH)
    shutil.copy(npz_path, tmp_path / "m.npz")
    meta = json.loads(json_path.read_text())
    meta["metrics"]["mean_over_datasets"]["accuracy"] = 0.99
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError):
        Predictor.load(tmp_path / "m.npz")


def test_lineage_names_every_training_dataset_with_the_hash_of_its_data(default_model: Predictor) -> None:
    record = default_model.metadata["lineage"]
    names = [d["name"] for d in record["datasets"]]
    assert names == list(COLLECTIONS[TRAINING_COLLECTION])
    for entry in record["datasets"]:
        ds = load_dataset(entry["name"])
        assert entry["source"] == ds.source and entry["package"] in {"statsmodels", "statsforecast"}
        assert entry["package_version"]
        assert entry["n_series"] == len(ds.series) and entry["n_points"] == ds.n_points
        assert entry["sha256"] == ds.sha256(), f"{ds.name}: installed data differ from the training data"
    datasets = [load_dataset(n) for n in names]
    assert record == lineage(datasets, horizon=default_model.metadata["horizon"], config=default_model.config)


def test_stored_metrics_are_walk_forward_and_beat_the_majority_baseline(default_model: Predictor) -> None:
    stored = default_model.metadata["metrics"]
    assert stored["evaluation"].startswith("walk-forward")
    assert set(stored["per_dataset"]) == set(COLLECTIONS[TRAINING_COLLECTION])
    engine, majority = stored["mean_over_datasets"], stored["majority_baseline_mean_over_datasets"]
    assert engine["accuracy"] > majority["accuracy"]
    assert engine["brier"] < majority["brier"]


def test_default_model_beats_majority_walk_forward_on_a_held_out_real_dataset(default_model: Predictor) -> None:
    trained_on = {d["name"] for d in default_model.metadata["lineage"]["datasets"]}
    labels, engine_p, majority_p = [], [], []
    for name in HELD_OUT:
        assert name not in trained_on
        for s in load_dataset(name).series:
            # Forecast every origin of the second half; the baseline learns from the first half only.
            origins, y = direction_pairs(s, 1, first_origin=s.size // 2)
            idx = origins.astype(np.int64)
            histories = [s[: t + 1] for t in idx]
            engine_p.append(default_model.predict_proba(histories))
            majority_p.append(MajorityClass().fit([s[: idx[0] + 1]], 1).predict_proba(histories))
            labels.append(y)
    y_all = np.concatenate(labels)
    engine_acc = metrics.directional_accuracy(y_all, np.concatenate(engine_p))
    majority_acc = metrics.directional_accuracy(y_all, np.concatenate(majority_p))
    assert engine_acc > majority_acc
    assert metrics.brier_score(y_all, np.concatenate(engine_p)) < metrics.brier_score(y_all, np.concatenate(majority_p))
