"""Loaded predictors, one per artifact content hash, shared by every tenant that uses the artifact."""

from __future__ import annotations

import threading
import time
import uuid

from qortex.core.errors import NotFound
from qortex.engine import Predictor
from qortex.models.models import Model

BUILTIN_DEFAULT = "builtin:default"
REFERENCE_CACHE_SECONDS = 30.0
REFERENCE_CACHE_ENTRIES = 10_000


class ModelReferences:
    """Which model a tenant's reference ("default", a name, an id) resolves to, remembered briefly.

    Keyed by tenant, so one tenant's entry can never answer another's request; a newly registered
    default is picked up within `ttl_seconds`.
    """

    def __init__(self, *, ttl_seconds: float = REFERENCE_CACHE_SECONDS, max_entries: int = REFERENCE_CACHE_ENTRIES):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[uuid.UUID, str | None], tuple[Model, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tenant_id: uuid.UUID, reference: str | None) -> Model | None:
        entry = self._entries.get((tenant_id, _canonical(reference)))
        if entry is None or time.monotonic() - entry[1] > self.ttl_seconds:
            return None
        return entry[0]

    def put(self, tenant_id: uuid.UUID, reference: str | None, model: Model) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[(tenant_id, _canonical(reference))] = (model, time.monotonic())


def _canonical(reference: str | None) -> str | None:
    """One key for every spelling of a model id (case, braces, URN), so spellings cannot crowd the cache."""
    try:
        return str(uuid.UUID(reference)) if reference is not None else None
    except ValueError:
        return reference  # a name or name@version: names are compared exactly


class ModelRuntime:
    def __init__(self) -> None:
        self._loaded: dict[str, Predictor] = {}
        self._lock = threading.Lock()
        self.references = ModelReferences()

    def builtin_default(self) -> Predictor:
        return self.load(BUILTIN_DEFAULT)

    def can_serve(self, model: Model) -> bool:
        """Whether this server computes the model a row describes: an artifact it has, with the row's parameters.

        Every release ships its default model under the same reference, so a registered version is
        servable only where the hashes agree: answering for another release's version with these
        parameters would label one model's predictions with another's version.
        """
        if model.artifact != BUILTIN_DEFAULT:
            return False
        return self.builtin_default().model_hash_ == model.content_sha256

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
