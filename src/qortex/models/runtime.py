"""Loaded predictors, one per artifact content hash, shared by every tenant that uses the artifact."""

from __future__ import annotations

import threading

from qortex.core.errors import NotFound
from qortex.engine import Predictor

BUILTIN_DEFAULT = "builtin:default"


class ModelRuntime:
    def __init__(self) -> None:
        self._loaded: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def builtin_default(self) -> Predictor:
        return self.load(BUILTIN_DEFAULT)

    def load(self, artifact: str) -> Predictor:
        """Returns the predictor for an artifact reference, loading (and hash-verifying) it once."""
        with self._lock:
            predictor = self._loaded.get(artifact)
            if predictor is None:
                if artifact != BUILTIN_DEFAULT:
                    raise NotFound(f"model artifact {artifact!r} is not available on this server")
                predictor = Predictor.load_default()
                self._loaded[artifact] = predictor
            return predictor
