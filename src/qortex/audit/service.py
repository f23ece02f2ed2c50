"""Appending security events to a tenant's hash chain, and verifying the chain.

Events that describe a change are appended in the change's own transaction (`append`), so both
commit or neither does. Events with no transaction of their own (a refused login, a denied
permission, a rate limit) go through `AuditWriter`, which commits them in groups before the
response that reports them is sent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit import repository
from qortex.audit.chain import GENESIS, event_hash
from qortex.audit.models import AuditEvent
from qortex.audit.repository import StoredEvent
from qortex.core.clock import utcnow
from qortex.core.database import Database, TenantScope
from qortex.core.errors import InvalidInput, Overloaded, StorageUnavailable
from qortex.core.ids import new_id
from qortex.core.pagination import Page, page_of
from qortex.resilience.group_worker import TenantGroupWorker

log = structlog.get_logger("qortex.audit")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, for the audit log."""

    request_id: str | None = None
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What happened, who did it (pseudonymous id), to what, and how it ended."""

    action: str
    outcome: str = "success"
    actor_kind: str = "system"
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def append(*, session: AsyncSession, scope: TenantScope, records: Sequence[AuditRecord]) -> None:
    """Appends records to the tenant's chain inside the caller's (write) transaction."""
    if not records:
        return
    head = await repository.lock_head(session=session, scope=scope)
    events = []
    for record in records:
        fields: dict[str, Any] = {
            "id": new_id(),
            "tenant_id": scope.tenant_id,
            "seq": head.seq + 1,
            "occurred_at": utcnow(),
            "action": record.action,
            "outcome": record.outcome,
            "actor_kind": record.actor_kind,
            "actor_id": record.actor_id,
            "target_type": record.target_type,
            "target_id": record.target_id,
            "request_id": record.request_id,
            "client_ip": record.client_ip,
            "details": dict(record.details),
            "prev_hash": head.hash,
        }
        event = AuditEvent(**fields, hash=event_hash(fields))
        head.seq, head.hash = event.seq, event.hash
        events.append(event)
    repository.add(session=session, scope=scope, rows=events)


@dataclass(slots=True)
class _Pending:
    scope: TenantScope
    record: AuditRecord
    done: asyncio.Future[None]


class AuditWriter(TenantGroupWorker[_Pending]):
    """Group commit for standalone events: callers wait until their event is durable."""

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        super().__init__(db, name="qortex-audit-writer", max_group=max_batch)

    async def write(self, scope: TenantScope, record: AuditRecord) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.put(_Pending(scope, record, done))
        await done

    def write_refusal_in_background(self, scope: TenantScope, record: AuditRecord) -> None:
        """Queues the record of a refused request and returns at once, so the refusal's timing does not
        depend on whether there was anything to record; stopping the writer still stores it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def report(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                error = future.exception()
                log.error("audit_refusal_not_stored", action=record.action, error_type=type(error).__name__)

        done.add_done_callback(report)
        try:
            self.put(_Pending(scope, record, done))
        except (Overloaded, StorageUnavailable) as error:
            # Stopping, or the writer's task has died: the refusal stands, and must answer as it would for anyone.
            log.error("audit_refusal_not_stored", action=record.action, error_type=type(error).__name__)

    async def write_refusal(self, scope: TenantScope, record: AuditRecord) -> None:
        """Writes the record of a refused request; the refusal stands even if its record cannot be stored."""
        try:
            await self.write(scope, record)
        except Exception as error:
            log.error("audit_refusal_not_stored", action=record.action, error_type=type(error).__name__)

    async def handle_tenant(self, scope: TenantScope, items: list[_Pending]) -> None:
        async with self._db.tenant_session(scope, write=True) as session:
            await append(session=session, scope=scope, records=[item.record for item in items])


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    intact: bool
    events_checked: int
    first_broken_seq: int | None = None
    reason: str | None = None


async def verify(*, db: Database, scope: TenantScope) -> ChainVerdict:
    """Recomputes the chain: any edited, deleted, inserted or reordered event breaks it, and so does a
    head that does not end it (moved back, deleted, or left behind by events added after it). So does an
    event with a field that cannot be read, whose hash cannot be recomputed.

    The events and the head are read from one snapshot: otherwise an event appended by another
    process between the two reads would make an intact chain look longer than its head.
    """
    checked = 0
    previous = GENESIS
    async with db.tenant_session(scope, snapshot=True) as session:
        async for stored in repository.iterate(session=session, scope=scope):
            event, seq, expected_seq = stored.fields, stored.fields["seq"], checked + 1
            if seq != expected_seq:
                return ChainVerdict(False, checked, expected_seq, f"event {expected_seq} is missing or out of order")
            if stored.unreadable:
                why = ", ".join(f"{name} is {reason}" for name, reason in stored.unreadable.items())
                return ChainVerdict(False, checked, seq, f"event {seq} cannot be read: {why}")
            if event["prev_hash"] != previous:
                return ChainVerdict(False, checked, seq, f"event {seq} does not follow event {checked}")
            if event_hash(event) != event["hash"]:
                return ChainVerdict(False, checked, seq, f"event {seq} was altered after it was written")
            previous = event["hash"]
            checked += 1
        head = await repository.get_head(session=session, scope=scope)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if (head_seq, head_hash) != (checked, previous):
        return ChainVerdict(False, checked, checked + 1, f"the chain ends at event {checked}, its head says {head_seq}")
    return ChainVerdict(True, checked)


async def list_events(
    *, db: Database, scope: TenantScope, limit: int, before: uuid.UUID | None, action: str | None
) -> Page[StoredEvent]:
    async with db.tenant_session(scope) as session:
        # Pages follow the chain, and a cursor names the event to continue after: one that names none of the
        # tenant's (made up, from another list or another tenant) marks no position in it, and an empty page
        # would pass that off as the end of the trail.
        if before is not None and not await repository.has_event(session=session, scope=scope, event_id=before):
            raise InvalidInput(
                "cursor names no audit event of this tenant; pass back a next_cursor this list answered",
                errors=[{"loc": ["query", "cursor"], "msg": "names no audit event"}],
            )
        rows = await repository.list_events(session=session, scope=scope, limit=limit + 1, before=before, action=action)
    return page_of(rows, limit=limit)
