"""Engine configuration: one frozen dataclass, serialisable to plain JSON types."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CALIBRATIONS", "ENCODERS", "EngineConfig"]

ENCODERS = ("rate", "latency", "delta", "population")
CALIBRATIONS = ("platt", "isotonic", "none")

Encoder = Literal["rate", "latency", "delta", "population"]
Calibration = Literal["platt", "isotonic", "none"]


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the pipeline; the defaults are the shipped configuration."""

    window: int = 64
    encoder: Encoder = "delta"
    n_neurons: int = 128
    n_qubits: int = 8
    n_quantum_layers: int = 2
    seed: int = 0
    use_patterns: bool = True
    use_reservoir: bool = True
    use_quantum: bool = True
    # Every normalised move of the window older than the momentum lags, so that a move one
    # season back (lag 4, 12 or 52) reaches the readout directly.
    use_window_moves: bool = True
    # The window's own period (largest autocorrelation) and the move one period back.
    use_seasonal: bool = True
    neutral_band: float = 0.02
    l2: float = 3.0
    # Penalty of the reservoir and circuit columns: hundreds of them against a few thousand
    # windows need a stronger prior than the few dozen momentum and pattern columns.
    reservoir_l2: float = 1000.0
    calibration: Calibration = "platt"
    calibration_fraction: float = 0.2
    max_iter: int = 500
    # Reservoir (leaky integrate-and-fire liquid state machine).
    spectral_radius: float = 0.9
    connectivity: float = 0.1
    input_connectivity: float = 0.5
    input_scale: float = 1.2
    membrane_tau: float = 8.0
    threshold: float = 1.0
    reset: float = 0.0
    refractory: int = 2
    trace_tau: float = 4.0
    recent_steps: int = 8
    # Encoders.
    encoder_channels: int = 4
    # Result objects.
    top_factors: int = 8
    min_pattern_strength: float = 0.3
    spatial_top_k: int = 8

    def __post_init__(self) -> None:
        # Types first: the range checks below would raise TypeError, or pass NaN, otherwise.
        problems = [
            problem
            for f in dataclasses.fields(self)
            if (problem := _type_problem(f.name, f.type, getattr(self, f.name))) is not None
        ]
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.calibration not in CALIBRATIONS:
            problems.append(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if high is None and value < low:
                problems.append(f"{name} must be >= {low}, got {value!r}")
            elif high is not None and not low <= value <= high:
                problems.append(f"{name} must be in [{low}, {high}], got {value!r}")
        if not 0.0 <= self.neutral_band < 0.5:
            problems.append(f"neutral_band must be in [0, 0.5), got {self.neutral_band!r}")
        for name in ("l2", "reservoir_l2", "spectral_radius"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("input_scale", "membrane_tau", "trace_tau"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.05 <= self.calibration_fraction <= 0.5:
            problems.append(f"calibration_fraction must be in [0.05, 0.5], got {self.calibration_fraction!r}")
        for name in ("connectivity", "input_connectivity"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.threshold <= self.reset:
            problems.append(f"need threshold > reset, got threshold={self.threshold!r}, reset={self.reset!r}")
        if not 0.0 <= self.min_pattern_strength <= 1.0:
            problems.append(f"min_pattern_strength must be in [0, 1], got {self.min_pattern_strength!r}")
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Returns the configuration as a dict of plain JSON types."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """Builds a configuration from `to_dict` output, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EngineConfig keys: {unknown}")
        return cls(**data)


# (field, lowest, highest or None) of every integer field.
_INT_RANGES: tuple[tuple[str, int, int | None], ...] = (
    ("window", 8, 4096),
    ("n_neurons", 4, 4096),
    ("n_qubits", 2, 16),
    ("n_quantum_layers", 1, 8),
    ("seed", 0, None),
    ("max_iter", 1, None),
    ("refractory", 0, None),
    ("recent_steps", 1, None),
    ("encoder_channels", 1, None),
    ("top_factors", 1, None),
    ("spatial_top_k", 1, None),
)


def _type_problem(name: str, annotation: object, value: object) -> str | None:
    """Says what is wrong with the type of one field's value, or None.

    `annotation` is the field's annotation as written (a string, under postponed evaluation).
    A bool is not a number here, and a number must be finite.
    """
    if annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation == "float":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value)
        )
    else:
        ok = isinstance(value, str)
    if ok:
        return None
    kind = {"bool": "a bool", "int": "an integer", "float": "a finite number"}.get(str(annotation), "a string")
    return f"{name} must be {kind}, got {value!r}"
