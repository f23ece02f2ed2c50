"""Queries on the audit chain, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Column, ColumnElement, Dialect, Label, Row, Text, case, cast, func, literal, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import NullType

from qortex.audit.chain import GENESIS, HASHED_FIELDS
from qortex.audit.models import AuditChainHead, AuditEvent
from qortex.core.database import TenantScope


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back, field by field: a field whose stored value cannot be read is None in `fields`
    and named in `unreadable`, with what it is not."""

    fields: dict[str, Any]
    unreadable: dict[str, str]

    @property
    def id(self) -> uuid.UUID:
        event_id: uuid.UUID = self.fields["id"]
        return event_id


# The type each field but the row's own id reads back as (a nullable column may also hold None).
_KINDS: dict[str, type] = {**HASHED_FIELDS, "hash": str}

# What a value that does not read back as its kind is not.
_KIND_NAMES: dict[type, str] = {
    uuid.UUID: "a UUID",
    int: "an integer",
    str: "text",
    datetime: "a date-time",
    dict: "a JSON object",
}

# asyncpg fails a whole fetch on an instant outside Python's years 1 to 9999 (PostgreSQL's reach from 4713 BC
# to 294276 AD), so such an instant is fetched as null instead. A microsecond inside Python's own limits:
# asyncpg would send those as -infinity and infinity.
_PYTHON_INSTANTS = (
    datetime.min.replace(tzinfo=UTC) + timedelta(microseconds=1),
    datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1),
)


# How SQLite text is fetched here: as the hex of its bytes, behind this mark, for `_reader` to decode.
_SQLITE_TEXT = "utf8:"


def _stored_fields(dialect: Dialect) -> list[Label[Any]]:
    """The chained fields as the driver reads them, for `_reader` to parse event by event: parsed by SQLAlchemy,
    one value edited into something that does not parse (on SQLite any text will do) fails the whole result.

    Nor may the driver decode anything itself: sqlite3 fails a whole fetch on text that is not UTF-8, and asyncpg
    on JSON that Python's parser refuses (an integer of more than 4,300 digits), so those arrive undecoded.
    """
    fields = []
    for column in _chained_columns():
        stored: ColumnElement[Any] = column
        if column.key == "occurred_at":
            stored = case((column.between(*_PYTHON_INSTANTS), column))
        if dialect.name == "sqlite":
            stored = case((func.typeof(stored) == "text", literal(_SQLITE_TEXT) + func.hex(stored)), else_=stored)
        elif column.key == "details":
            stored = cast(stored, Text)
        fields.append(type_coerce(stored, NullType()).label(column.key))
    return fields


def _chained_columns() -> list[Column[Any]]:
    """Every column but the row's own id, which the chain does not cover."""
    return [column for column in AuditEvent.__mapper__.columns if column.key != "id"]


def _readable(value: Any, kind: type, nullable: bool) -> bool:
    if value is None:
        return nullable
    if not isinstance(value, kind):
        return False
    if kind is dict:
        try:
            # Hashed and answered as JSON: no lone surrogate, no integer beyond 64 bits, and nothing orjson
            # writes as something else (NaN and infinities become null, which would hash as the original null).
            return bool(orjson.loads(orjson.dumps(value)) == value)
        except orjson.JSONEncodeError:
            return False
    return True


def _undecoded(dialect: Dialect, column: Column[Any]) -> Callable[[Any], Any] | None:
    """The parser of a column's value as `_stored_fields` fetches it."""
    parse = column.type.dialect_impl(dialect).result_processor(dialect, None)
    if dialect.name == "sqlite":

        def from_hex(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(_SQLITE_TEXT):
                value = bytes.fromhex(value.removeprefix(_SQLITE_TEXT)).decode()  # UnicodeDecodeError: unreadable
            return parse(value) if parse else value

        return from_hex
    return orjson.loads if column.key == "details" else parse


def _reader(dialect: Dialect) -> Callable[[Row[Any]], StoredEvent]:
    """Parses each field with its column's own parser, as SQLAlchemy would, but field by field."""
    columns = [
        (column.key, _undecoded(dialect, column), _KINDS[column.key], bool(column.nullable))
        for column in _chained_columns()
    ]

    def read(row: Row[Any]) -> StoredEvent:
        fields = dict(row._mapping)
        unreadable: dict[str, str] = {}
        for name, parse, kind, nullable in columns:
            try:
                value = parse(fields[name]) if parse else fields[name]
                readable = _readable(value, kind, nullable)
            # What the parsers raise for a malformed value, or for JSON nested beyond Python's recursion limit.
            except (ValueError, TypeError, OverflowError, RecursionError):
                readable = False
            if readable:
                fields[name] = value
            else:
                fields[name], unreadable[name] = None, f"not {_KIND_NAMES[kind]}"
        return StoredEvent(fields=fields, unreadable=unreadable)

    return read


async def lock_head(*, session: AsyncSession, scope: TenantScope) -> AuditChainHead:
    """The chain head (created at the genesis hash if new), locked until the transaction ends.

    Creating it with ON CONFLICT DO NOTHING first means two first writers never both insert a head.
    """
    dialect = (await session.connection()).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(AuditChainHead)
        .values(tenant_id=scope.tenant_id, seq=0, hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    head = await session.scalar(
        select(AuditChainHead).where(AuditChainHead.tenant_id == scope.tenant_id).with_for_update()
    )
    if head is None:
        raise RuntimeError("the audit chain head vanished inside its own transaction")
    return head


async def get_head(*, session: AsyncSession, scope: TenantScope) -> AuditChainHead | None:
    return await session.scalar(select(AuditChainHead).where(AuditChainHead.tenant_id == scope.tenant_id))


def add(*, session: AsyncSession, scope: TenantScope, rows: Sequence[AuditEvent]) -> None:
    for row in rows:
        if row.tenant_id != scope.tenant_id:
            raise ValueError("an audit event can only be stored in its own tenant's chain")
    session.add_all(rows)


async def iterate(*, session: AsyncSession, scope: TenantScope, batch: int = 1000) -> AsyncIterator[StoredEvent]:
    """Every event of the tenant in chain order."""
    dialect = (await session.connection()).dialect
    read = _reader(dialect)
    result = await session.stream(
        select(*_stored_fields(dialect))
        .where(AuditEvent.tenant_id == scope.tenant_id)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=batch)
    )
    async for row in result:
        yield read(row)


async def has_event(*, session: AsyncSession, scope: TenantScope, event_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(AuditEvent.id).where(AuditEvent.tenant_id == scope.tenant_id, AuditEvent.id == event_id)
    )
    return found is not None


async def list_events(
    *, session: AsyncSession, scope: TenantScope, limit: int, before: uuid.UUID | None, action: str | None
) -> list[StoredEvent]:
    dialect = (await session.connection()).dialect
    read = _reader(dialect)
    # The id too, read as usual: a cursor names an event by it.
    query = select(AuditEvent.id, *_stored_fields(dialect)).where(AuditEvent.tenant_id == scope.tenant_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before is not None:
        # Chain order, which the hashes cover (an event's id is not hashed, so ordering by it could be
        # rearranged unnoticed); the cursor names the last event seen.
        seen = select(AuditEvent.seq).where(AuditEvent.tenant_id == scope.tenant_id, AuditEvent.id == before)
        query = query.where(AuditEvent.seq < seen.scalar_subquery())
    return [read(row) for row in await session.execute(query.order_by(AuditEvent.seq.desc()).limit(limit))]
