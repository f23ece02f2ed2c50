"""What a prediction returns: plain frozen dataclasses with JSON-ready `to_dict`.

Slotted, because a batch of 1,000 series builds about 10,000 of them and slots make that a third cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Direction", "Factor", "FactorGroup", "Pattern", "PredictionResult"]

Direction = Literal["up", "down", "neutral"]
FactorGroup = Literal["patterns", "momentum", "reservoir", "quantum"]


@dataclass(frozen=True, slots=True)
class Factor:
    """One readable contribution: `weight` is its share of the logit, `value` the mean raw feature."""

    name: str
    group: FactorGroup
    value: float
    weight: float

    def to_dict(self) -> dict[str, Any]:
        """Returns plain JSON types."""
        return {"name": self.name, "group": self.group, "value": self.value, "weight": self.weight}


@dataclass(frozen=True, slots=True)
class Pattern:
    """A detected pattern; start and end are inclusive indices into the input series."""

    type: str
    strength: float
    start: int
    end: int
    period: float | None = None
    spatial_features: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Returns plain JSON types."""
        return {
            "type": self.type,
            "strength": self.strength,
            "start": self.start,
            "end": self.end,
            "period": self.period,
            "spatial_features": list(self.spatial_features),
        }


@dataclass(frozen=True, slots=True)
class PredictionResult:
    """The engine's answer for one series."""

    direction: Direction
    confidence: float
    probability_up: float
    factors: list[Factor]
    patterns: list[Pattern]
    quantum: dict[str, list[float]]
    timings_ms: dict[str, float]
    model_version: str
    horizon: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Returns plain JSON types (str, float, int, list, dict, None)."""
        return {
            "direction": self.direction,
            "confidence": self.confidence,
            "probability_up": self.probability_up,
            "factors": [f.to_dict() for f in self.factors],
            "patterns": [p.to_dict() for p in self.patterns],
            "quantum": {k: list(v) for k, v in self.quantum.items()},
            "timings_ms": dict(self.timings_ms),
            "model_version": self.model_version,
            "horizon": self.horizon,
        }
