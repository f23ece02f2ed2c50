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
        ({"l2": float("nan")}, "l2 must be a finite number, got nan"),
        ({"reservoir_l2": float("inf")}, "reservoir_l2 must be a finite number, got inf"),
        ({"threshold": float("nan")}, "threshold must be a finite number, got nan"),
        ({"spectral_radius": float("nan")}, "spectral_radius must be a finite number, got nan"),
        ({"input_scale": float("nan")}, "input_scale must be a finite number, got nan"),
        ({"window": 16.5}, "window must be an integer, got 16.5"),
        ({"window": "64"}, "window must be an integer, got '64'"),
        ({"window": True}, "window must be an integer, got True"),
        ({"l2": True}, "l2 must be a finite number, got True"),
        ({"use_quantum": 1}, "use_quantum must be a bool, got 1"),
        ({"encoder": None}, "encoder must be a string, got None"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"refractory": -1}, "refractory must be >= 0, got -1"),
        ({"connectivity": 0.0}, r"connectivity must be in \(0, 1\], got 0.0"),
    ],
)
def test_invalid_values_are_refused(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        EngineConfig(**changes)  # type: ignore[arg-type]


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown EngineConfig keys"):
        EngineConfig.from_dict({"window": 64, "neurons": 3})


def test_integers_are_accepted_where_a_float_is_expected() -> None:
    assert EngineConfig(l2=3, reset=-1).l2 == 3.0
