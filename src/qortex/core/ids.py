"""Time-ordered identifiers (UUIDv7), so primary keys sort by creation time and index well."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
