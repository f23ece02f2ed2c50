"""Idempotency-Key support: the first answer to a create request is stored and replayed."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from qortex.core.clock import utcnow
from qortex.core.database import Base, Database, TableRows, TenantScope
from qortex.core.errors import IdempotencyKeyReused, InvalidInput
from qortex.core.housekeeping import delete_in_chunks
from qortex.core.ids import new_id
from qortex.core.payload import PayloadContext, payload_codec

MAX_KEY_LENGTH = 255
# How long a stored first answer is replayed. A retry comes within minutes or hours; after a day the key
# is free again, and the answer is swept away, so the records do not grow with every request ever made.
KEY_LIFETIME = timedelta(hours=24)
SWEEP_CHUNK = 1000


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (
        Index("uq_idempotency_tenant_key", "tenant_id", "key", unique=True),
        Index("ix_idempotency_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response_payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A create request's Idempotency-Key and a fingerprint of what it asked for."""

    key: str
    request_sha256: str

    @classmethod
    def from_header(cls, key: str | None, *, operation: str, body: bytes) -> IdempotentRequest | None:
        if key is None:
            return None
        # ASCII only: header bytes arrive read as Latin-1, so a UTF-8 key would be accepted or refused
        # by whichever bytes its encoding happens to hold.
        if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
            raise InvalidInput(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": "invalid idempotency key"}],
            )
        digest = hashlib.sha256(operation.encode() + b"\0" + body).hexdigest()
        return cls(key=key, request_sha256=digest)


@dataclass(frozen=True, slots=True)
class Answer:
    """A create response body, and whether it replays an earlier answer.

    The body is what orjson writes as the response: JSON values, or ids and dataclasses it writes itself.
    """

    body: dict[str, Any]
    replayed: bool


def _context(record_id: uuid.UUID, scope: TenantScope) -> PayloadContext:
    return PayloadContext(scope.tenant_id, "idempotency_records", record_id, "response_payload")


async def _live_record(
    session: AsyncSession, scope: TenantScope, request: IdempotentRequest
) -> tuple[IdempotencyRecord | None, uuid.UUID | None]:
    """The record for this key if it is still live, and the id of an expired one to forget."""
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == scope.tenant_id, IdempotencyRecord.key == request.key
        )
    )
    if record is None:
        return None, None
    if record.created_at <= utcnow() - KEY_LIFETIME:
        return None, record.id
    return record, None


def _stored_answer(record: IdempotencyRecord, scope: TenantScope, request: IdempotentRequest) -> Answer:
    if record.request_sha256 != request.request_sha256:
        raise IdempotencyKeyReused(f"Idempotency-Key {request.key!r} was first used for a different request")
    body = payload_codec().decode(record.response_payload, _context(record.id, scope))
    return Answer(dict(body), replayed=True)


async def _forget(db: Database, scope: TenantScope, record_id: uuid.UUID) -> None:
    """Deletes an expired record, so its key can be stored again; a fresher one by the same key stays."""
    async with db.tenant_session(scope, write=True) as session:
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == scope.tenant_id,
                IdempotencyRecord.id == record_id,
                IdempotencyRecord.created_at <= utcnow() - KEY_LIFETIME,
            )
        )


def remember(
    *, session: AsyncSession, scope: TenantScope, request: IdempotentRequest, status_code: int, body: Any
) -> None:
    """Stores the answer in the caller's transaction, so it commits together with what it describes."""
    record_id = new_id()
    session.add(
        IdempotencyRecord(
            id=record_id,
            tenant_id=scope.tenant_id,
            key=request.key,
            request_sha256=request.request_sha256,
            status_code=status_code,
            response_payload=payload_codec().encode(body, _context(record_id, scope)),
        )
    )


async def replay(*, db: Database, scope: TenantScope, request: IdempotentRequest | None) -> Answer | None:
    """The stored first answer for this request's key, if any; refuses a key reused for another request.

    A key whose answer is older than `KEY_LIFETIME` is free: its record is forgotten and None returned.
    """
    if request is None:
        return None
    async with db.tenant_session(scope) as session:
        record, expired_id = await _live_record(session, scope, request)
        stored = None if record is None else _stored_answer(record, scope, request)
    if expired_id is not None:
        await _forget(db, scope, expired_id)
    return stored


async def sweep_expired(*, db: Database, scope: TenantScope) -> int:
    """Deletes the tenant's answers older than `KEY_LIFETIME`; returns how many."""

    async def delete_chunk(session: AsyncSession, limit: int) -> int:
        expired = (
            select(IdempotencyRecord.id)
            .where(
                IdempotencyRecord.tenant_id == scope.tenant_id, IdempotencyRecord.created_at <= utcnow() - KEY_LIFETIME
            )
            .limit(limit)
        )
        result = await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == scope.tenant_id, IdempotencyRecord.id.in_(expired.scalar_subquery())
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    return await delete_in_chunks(db=db, scope=scope, delete_chunk=delete_chunk, chunk_size=SWEEP_CHUNK)


RowGroup = Sequence[Base] | TableRows


async def add_groups(*, session: AsyncSession, scope: TenantScope, groups: Sequence[RowGroup]) -> None:
    """Adds rows group by group, flushing each, so a row may reference rows of an earlier group."""
    for group in groups:
        if isinstance(group, TableRows):
            if any(row["tenant_id"] != scope.tenant_id for row in group.rows):
                raise ValueError(f"a {group.table.name} row can only be stored in its own tenant")
            if group.rows:
                await session.execute(insert(group.table), list(group.rows))
            continue
        for row in group:
            if getattr(row, "tenant_id", None) != scope.tenant_id:
                raise ValueError(f"a {type(row).__name__} can only be stored in its own tenant")
        session.add_all(group)
        await session.flush()


async def commit_once(
    *,
    db: Database,
    scope: TenantScope,
    request: IdempotentRequest | None,
    groups: Sequence[RowGroup],
    stored_body: dict[str, Any],
    before_rows: Callable[[AsyncSession], Awaitable[None]] | None = None,
    in_transaction: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> Answer | None:
    """Commits the row groups and the answer together; returns the earlier answer when a twin request won the race.

    `before_rows` runs first in the transaction (a check that takes locks, say); `in_transaction` after the
    rows are flushed (an audit append, say).
    """
    try:
        async with db.tenant_session(scope, write=True) as session:
            if before_rows is not None:
                await before_rows(session)
            await add_groups(session=session, scope=scope, groups=groups)
            if in_transaction is not None:
                await in_transaction(session)
            if request is not None:
                remember(session=session, scope=scope, request=request, status_code=201, body=stored_body)
    except IntegrityError:
        earlier = await replay(db=db, scope=scope, request=request)
        if earlier is None:
            raise
        return earlier
    return None
