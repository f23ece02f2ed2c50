"""Domain exceptions of the prediction engine."""

from __future__ import annotations

__all__ = ["ArtifactError", "EngineError", "InvalidSeriesError"]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidSeriesError(EngineError, ValueError):
    """An input series is unusable; the message names the series and the value index."""


class ArtifactError(EngineError):
    """A model artifact is missing, truncated, tampered with or of an unknown layout."""
