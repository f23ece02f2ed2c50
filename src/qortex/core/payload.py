"""The one place where stored payload fields are encoded, so encryption at rest can replace the codec.

Every encoded blob starts with a format byte; readers dispatch on it, so rows written by an older
codec stay readable after a newer one is installed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

PLAIN_JSON = b"\x00"


@dataclass(frozen=True, slots=True)
class PayloadContext:
    """What a stored payload belongs to; an encrypting codec binds it as associated data."""

    tenant_id: uuid.UUID
    table: str
    row_id: uuid.UUID
    field: str


class PayloadCodec(Protocol):
    def encode(self, value: Any, context: PayloadContext) -> bytes: ...

    def decode(self, data: bytes, context: PayloadContext) -> Any: ...


class PlainJsonCodec:
    """Stores JSON as is (embedded default until a key provider is configured)."""

    def encode(self, value: Any, context: PayloadContext) -> bytes:
        return PLAIN_JSON + orjson.dumps(value)

    def decode(self, data: bytes, context: PayloadContext) -> Any:
        if data[:1] != PLAIN_JSON:
            raise ValueError(f"unknown payload format {data[:1]!r} in {context.table}.{context.field}")
        return orjson.loads(data[1:])


_codec: PayloadCodec = PlainJsonCodec()


def payload_codec() -> PayloadCodec:
    return _codec


def install_payload_codec(codec: PayloadCodec) -> None:
    global _codec
    _codec = codec
