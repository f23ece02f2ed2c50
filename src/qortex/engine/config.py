"""Engine configuration: one frozen dataclass, serialisable to plain JSON types."""

from __future__ import annotations

import dataclasses
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
        problems: list[str] = []
        if not 8 <= self.window <= 4096:
            problems.append(f"window must be in [8, 4096], got {self.window}")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.calibration not in CALIBRATIONS:
            problems.append(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if not 4 <= self.n_neurons <= 4096:
            problems.append(f"n_neurons must be in [4, 4096], got {self.n_neurons}")
        if not 2 <= self.n_qubits <= 16:
            problems.append(f"n_qubits must be in [2, 16], got {self.n_qubits}")
        if not 1 <= self.n_quantum_layers <= 8:
            problems.append(f"n_quantum_layers must be in [1, 8], got {self.n_quantum_layers}")
        if not 0.0 <= self.neutral_band < 0.5:
            problems.append(f"neutral_band must be in [0, 0.5), got {self.neutral_band}")
        if self.l2 < 0 or self.reservoir_l2 < 0:
            problems.append(f"l2 and reservoir_l2 must be >= 0, got {self.l2} and {self.reservoir_l2}")
        if not 0.05 <= self.calibration_fraction <= 0.5:
            problems.append(f"calibration_fraction must be in [0.05, 0.5], got {self.calibration_fraction}")
        if not 0 < self.connectivity <= 1 or not 0 < self.input_connectivity <= 1:
            problems.append("connectivity and input_connectivity must be in (0, 1]")
        if self.spectral_radius < 0 or self.input_scale <= 0:
            problems.append("spectral_radius must be >= 0 and input_scale > 0")
        if self.membrane_tau <= 0 or self.trace_tau <= 0 or self.threshold <= self.reset:
            problems.append("time constants must be > 0 and threshold > reset")
        if self.refractory < 0 or self.recent_steps < 1 or self.encoder_channels < 1:
            problems.append("refractory must be >= 0, recent_steps and encoder_channels >= 1")
        if self.max_iter < 1 or self.top_factors < 1 or self.spatial_top_k < 1:
            problems.append("max_iter, top_factors and spatial_top_k must be >= 1")
        if not 0.0 <= self.min_pattern_strength <= 1.0:
            problems.append("min_pattern_strength must be in [0, 1]")
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
