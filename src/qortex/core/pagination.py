"""Opaque cursors for `?limit=&cursor=` pagination over time-ordered ids."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from qortex.core.errors import InvalidInput


class HasId(Protocol):
    # ORM rows declare `Mapped[uuid.UUID]`, schemas plain `uuid.UUID`; both read as a UUID on instances.
    # Read-only, so that a row whose id is a property qualifies too.
    @property
    def id(self) -> Any: ...


T = TypeVar("T", bound=HasId)


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "cursor is malformed; pass back a next_cursor this API answered",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def page_of(rows: Sequence[T], *, limit: int) -> Page[T]:
    """Rows were fetched with limit + 1 so that a following page can be detected without a count."""
    if len(rows) <= limit:
        return Page(items=rows, next_cursor=None)
    items = rows[:limit]
    last_id: uuid.UUID = items[-1].id
    return Page(items=items, next_cursor=encode_cursor(last_id))
