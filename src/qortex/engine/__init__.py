"""Qortex prediction engine: spike encoding, a LIF reservoir, patterns, a circuit and a readout.

The public API is what this module exports.
"""

from __future__ import annotations

from qortex.engine.config import EngineConfig
from qortex.engine.errors import ArtifactError, EngineError, InvalidSeriesError
from qortex.engine.predictor import Predictor
from qortex.engine.result import Factor, Pattern, PredictionResult
from qortex.engine.windows import sliding_windows

__all__ = [
    "ArtifactError",
    "EngineConfig",
    "EngineError",
    "Factor",
    "InvalidSeriesError",
    "Pattern",
    "PredictionResult",
    "Predictor",
    "sliding_windows",
]
