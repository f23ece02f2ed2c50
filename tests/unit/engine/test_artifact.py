"""Artifacts round-trip exactly and refuse anything tampered, truncated or missing."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qortex.engine import ArtifactError, EngineConfig, Predictor
from qortex.engine import artifact as artifact_module

from .conftest import SMALL_CONFIG, noisy_sine

PROBE = [noisy_sine(120, 900 + i) for i in range(6)] + [np.full(30, 2.0), noisy_sine(9, 1)]


@pytest.fixture
def saved(small_model: Predictor, tmp_path: Path) -> Path:
    small_model.set_metrics({"accuracy": 0.61, "folds": [1, 2]})
    return small_model.save(tmp_path / "model")


def test_save_load_predict_gives_identical_output(small_model: Predictor, saved: Path) -> None:
    assert saved.suffix == ".npz" and saved.with_suffix(".json").is_file()
    loaded = Predictor.load(saved)
    np.testing.assert_array_equal(loaded.predict_proba(PROBE), small_model.predict_proba(PROBE))
    before = [r.to_dict() for r in small_model.predict_batch(PROBE)]
    after = [r.to_dict() for r in loaded.predict_batch(PROBE)]
    for a, b in zip(before, after, strict=True):
        a.pop("timings_ms")
        b.pop("timings_ms")
        assert a == b
    assert loaded.model_version == small_model.model_version
    assert loaded.metadata["metrics"] == {"accuracy": 0.61, "folds": [1, 2]}
    assert loaded.metadata["content_hash"] == json.loads(saved.with_suffix(".json").read_text())["content_hash"]


def test_load_accepts_the_base_name_or_either_file(saved: Path) -> None:
    for path in (saved, saved.with_suffix(""), saved.with_suffix(".json")):
        assert Predictor.load(path).horizon_ == 1


def test_saving_twice_writes_identical_npz_bytes(small_model: Predictor, saved: Path, tmp_path: Path) -> None:
    again = small_model.save(tmp_path / "again")
    assert again.read_bytes() == saved.read_bytes()


def test_the_npz_holds_no_pickled_objects(saved: Path) -> None:
    with np.load(saved, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


def test_a_flipped_byte_in_the_npz_is_refused(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        Predictor.load(saved)


def test_an_edited_json_is_refused(saved: Path) -> None:
    meta_path = saved.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["accuracy"] = 0.99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        Predictor.load(saved)


def test_a_truncated_npz_is_refused(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        Predictor.load(saved)


def test_a_save_that_fails_part_way_leaves_the_previous_artifact_loadable(small_model: Predictor, saved: Path) -> None:
    """A full disk stops the write of the .npz half way; the model saved before must survive it."""
    other = Predictor(small_model.config).fit([noisy_sine(300, 7), noisy_sine(300, 8)])
    before = sorted(saved.parent.iterdir())
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (saved.stat().st_size // 2, hard))
    try:
        with pytest.raises(OSError, match="too large"):
            other.save(saved)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert Predictor.load(saved).model_version == small_model.model_version
    assert sorted(saved.parent.iterdir()) == before


def test_saving_through_a_link_replaces_the_linked_file_and_keeps_the_link(
    small_model: Predictor, saved: Path, tmp_path: Path
) -> None:
    links = [tmp_path / "current.npz", tmp_path / "current.json"]
    for link, target in zip(links, (saved, saved.with_suffix(".json")), strict=True):
        link.symlink_to(target)
    other = Predictor(small_model.config).fit([noisy_sine(300, 7), noisy_sine(300, 8)])
    other.save(links[0])
    assert all(link.is_symlink() for link in links)
    assert Predictor.load(saved).model_version == other.model_version


def test_missing_files_are_reported_by_name(saved: Path) -> None:
    saved.with_suffix(".json").unlink()
    with pytest.raises(ArtifactError, match=r"not found: .*model\.json"):
        Predictor.load(saved)
    with pytest.raises(ArtifactError, match="not found"):
        Predictor.load(saved.parent / "nothing.npz")


def test_malformed_json_is_refused(saved: Path) -> None:
    saved.with_suffix(".json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Predictor.load(saved)


def test_deeply_nested_json_is_refused_not_crashed(saved: Path) -> None:
    saved.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Predictor.load(saved)


def test_a_rehashed_single_npy_in_place_of_the_archive_is_refused(saved: Path) -> None:
    _, meta = artifact_module.read(saved)
    with saved.open("wb") as npy:
        np.save(npy, np.zeros(3))
    meta["content_hash"] = artifact_module.content_hash(saved.read_bytes(), meta)
    saved.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"must be an \.npz archive"):
        Predictor.load(saved)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [("bogus", [1.0, 0.0], "unknown calibration 'bogus'"), ("platt", [1.0], "platt calibration cannot have")],
)
def test_a_rehashed_unknown_or_malformed_calibration_is_refused(
    saved: Path, kind: str, params: list[float], message: str
) -> None:
    """An unknown kind must not quietly fall back to a plain sigmoid."""
    arrays, meta = artifact_module.read(saved)
    meta["calibration_kind"] = kind
    arrays["calibration_params"] = np.asarray(params, dtype=np.float64)
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match=message):
        Predictor.load(saved)


def test_consistently_rehashed_but_swapped_arrays_are_refused(small_model: Predictor, saved: Path) -> None:
    """Someone who recomputes the content hash still cannot slip in other parameters."""
    arrays, meta = artifact_module.read(saved)
    arrays["readout_coef"] = arrays["readout_coef"] * 2
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match="model hash"):
        Predictor.load(saved)


def _forge(saved: Path, change: Callable[[Predictor], None]) -> Path:
    """Loads, changes and re-saves a model with every hash recomputed, as a forger who knows the format would."""
    model = Predictor.load(saved)
    change(model)
    model.model_hash_ = model._parameter_hash()
    return model.save(saved)


def _nan_coefficients(model: Predictor) -> None:
    model.readout_ = dataclasses.replace(model.readout_, coef=np.full_like(model.readout_.coef, np.nan))


def _zero_scales(model: Predictor) -> None:
    model.readout_ = dataclasses.replace(model.readout_, scale=np.zeros_like(model.readout_.scale))


def _nudge_recurrent_weights(model: Predictor) -> None:
    model.w_rec_ = model.w_rec_ + np.float32(1e-5)


def _huge_coefficients(model: Predictor) -> None:
    """Finite, but their sum overflows: the logit becomes inf - inf."""
    model.readout_ = dataclasses.replace(model.readout_, coef=np.full_like(model.readout_.coef, 1e308))


def _tiny_quantum_scales(model: Predictor) -> None:
    model.quantum_scale_ = np.full_like(model.quantum_scale_, 1e-45)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_nan_coefficients, "readout_coef must be finite"),
        (_zero_scales, "feature scales must be positive"),
        (_nudge_recurrent_weights, "not on the dyadic grid"),
        (_huge_coefficients, "readout coefficients are too large"),
        (_tiny_quantum_scales, "answer NaN"),
    ],
)
def test_rehashed_parameters_that_no_fit_produces_are_refused(
    saved: Path, change: Callable[[Predictor], None], message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        Predictor.load(_forge(saved, change))


def test_an_unexpected_array_is_refused(saved: Path) -> None:
    arrays, meta = artifact_module.read(saved)
    arrays["backdoor"] = np.zeros(2)
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match=r"unexpected arrays \['backdoor'\]"):
        Predictor.load(saved)


def test_a_calibration_kind_other_than_the_configured_one_is_refused(saved: Path) -> None:
    """The kind is not hashed; swapping Platt for a one-knot isotonic map must not pass as the same model."""
    arrays, meta = artifact_module.read(saved)
    meta["calibration_kind"] = "isotonic"
    arrays["calibration_params"] = np.array([0.0, 0.2])
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match="contradicts its configuration"):
        Predictor.load(saved)


@pytest.mark.parametrize("horizon", [0, 1.7, True])
def test_a_horizon_that_is_not_a_positive_integer_is_refused(saved: Path, horizon: object) -> None:
    arrays, meta = artifact_module.read(saved)
    meta["horizon"] = horizon
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match="horizon must be"):
        Predictor.load(saved)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_training_windows", 1.5, "n_training_windows must be an integer >= 20, got 1.5"),
        ("n_training_windows", -5, "n_training_windows must be an integer >= 20, got -5"),
        ("n_training_windows", True, "n_training_windows must be an integer >= 20, got True"),
        ("lineage", "x", "lineage must be a JSON object or null, got str"),
        ("metrics", [1, 2], "metrics must be a JSON object or null, got list"),
    ],
)
def test_rehashed_metadata_of_the_wrong_type_is_refused(saved: Path, key: str, value: object, message: str) -> None:
    """These are reported back as the model's facts: 1.5 windows must not quietly become 1."""
    arrays, meta = artifact_module.read(saved)
    meta[key] = value
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        Predictor.load(saved)


def test_wrong_shapes_are_refused(saved: Path) -> None:
    arrays, meta = artifact_module.read(saved)
    arrays["w_rec"] = arrays["w_rec"][:-1]
    meta.pop("content_hash")
    artifact_module.write(saved, arrays, meta)
    with pytest.raises(ArtifactError, match="'w_rec' has shape"):
        Predictor.load(saved)


def test_unknown_format_is_refused(saved: Path) -> None:
    _, meta = artifact_module.read(saved)
    meta["format"] = "other/9"
    npz = saved.read_bytes()
    meta["content_hash"] = artifact_module.content_hash(npz, meta)
    saved.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown format"):
        Predictor.load(saved)


def test_metrics_must_be_json(small_model: Predictor) -> None:
    with pytest.raises(ValueError, match="JSON"):
        small_model.set_metrics({"bad": float("nan")})


def test_load_default_reads_the_packaged_artifact_or_says_how_to_build_it() -> None:
    try:
        model = Predictor.load_default()
    except ArtifactError as exc:
        assert "train_default" in str(exc)
    else:
        result = model.predict_batch([noisy_sine(100, 0)])[0]
        assert 0 <= result.probability_up <= 1


def test_an_artifact_from_before_the_seasonal_features_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    old_style = EngineConfig(**{**SMALL_CONFIG.to_dict(), "use_window_moves": False, "use_seasonal": False})
    model = Predictor(old_style).fit([noisy_sine(300, s) for s in range(3)])
    arrays, meta = artifact_module.read(model.save(tmp_path / "old"))
    for key in ("use_window_moves", "use_seasonal", "reservoir_l2"):  # fields an older engine did not have
        del meta["config"][key]
    path = artifact_module.write(tmp_path / "old", arrays, meta)
    with pytest.raises(ArtifactError, match="feature names do not match"):
        Predictor.load(path)
