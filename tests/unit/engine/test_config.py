"""EngineConfig: frozen, validated, and round-trips through plain dicts."""

from __future__ import annotations

import dataclasses
import json

import pytest

from qortex.engine import EngineConfig


def test_round_trip_through_json() -> None:
    config = EngineConfig(window=32, encoder="population", n_neurons=64, calibration="isotonic", seed=9)
    assert EngineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EngineConfig().window = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"window": 4}, "window"),
        ({"encoder": "morse"}, "encoder"),
        ({"calibration": "magic"}, "calibration"),
        ({"n_qubits": 20}, "n_qubits"),
        ({"neutral_band": 0.5}, "neutral_band"),
        ({"l2": -1.0}, "l2"),
        ({"threshold": 0.0}, "threshold > reset"),
    ],
)
def test_invalid_values_are_refused(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        EngineConfig(**changes)  # type: ignore[arg-type]


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown EngineConfig keys"):
        EngineConfig.from_dict({"window": 64, "neurons": 3})
