"""The audit chain: appends are ordered and linked; any edit, deletion or reordering is detected."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import delete, func, literal_column, select, update

from qortex.audit import service as audit
from qortex.audit.models import AuditChainHead, AuditEvent
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.core.ids import new_id
from qortex.core.pagination import encode_cursor
from qortex.security.rbac import Role
from tests.conftest import TenantCredentials, key_for


async def write_events(db: Database, who: TenantCredentials, count: int) -> None:
    async with db.tenant_session(who.tenant.scope, write=True) as session:
        await audit.append(
            session=session,
            scope=who.tenant.scope,
            records=[audit.AuditRecord(action="test.event", details={"n": n}) for n in range(count)],
        )


async def test_an_untouched_chain_verifies(db: Database, acme: TenantCredentials) -> None:
    already = (await audit.verify(db=db, scope=acme.tenant.scope)).events_checked  # its creation and its key's
    await write_events(db, acme, 5)
    verdict = await audit.verify(db=db, scope=acme.tenant.scope)
    assert verdict.intact and verdict.events_checked == already + 5


async def test_a_tenants_chain_begins_with_its_creation_by_an_operator(db: Database, acme: TenantCredentials) -> None:
    async with db.tenant_session(acme.tenant.scope) as session:
        first = await session.scalar(select(AuditEvent).where(AuditEvent.seq == 1))
    assert first is not None
    assert (first.action, first.actor_kind, first.target_id) == ("tenant.create", "operator", str(acme.tenant.id))
    assert first.details == {"name": "acme", "plan": "standard"}


async def test_an_edited_event_is_detected(db: Database, owner_db: Database, acme: TenantCredentials) -> None:
    await write_events(db, acme, 5)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(outcome="failure"))
    verdict = await audit.verify(db=db, scope=acme.tenant.scope)
    assert not verdict.intact and verdict.first_broken_seq == 3


async def test_a_deleted_event_is_detected_even_the_last(
    db: Database, owner_db: Database, acme: TenantCredentials
) -> None:
    await write_events(db, acme, 5)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    assert not (await audit.verify(db=db, scope=acme.tenant.scope)).intact


async def test_a_head_moved_back_or_deleted_is_detected(
    db: Database, owner_db: Database, acme: TenantCredentials
) -> None:
    """The app's own role may update the head row (it moves it on every append), so it must not be trusted blindly;
    deleting it takes the owner's role."""
    await write_events(db, acme, 5)
    async with db.tenant_session(acme.tenant.scope) as session:
        second = await session.scalar(select(AuditEvent).where(AuditEvent.seq == 2))
    assert second is not None
    async with db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(
            update(AuditChainHead).where(AuditChainHead.tenant_id == acme.tenant.id).values(seq=2, hash=second.hash)
        )
    assert not (await audit.verify(db=db, scope=acme.tenant.scope)).intact
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(delete(AuditChainHead).where(AuditChainHead.tenant_id == acme.tenant.id))
    assert not (await audit.verify(db=db, scope=acme.tenant.scope)).intact


async def test_reordered_events_are_detected(db: Database, owner_db: Database, acme: TenantCredentials) -> None:
    await write_events(db, acme, 5)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(seq=-2))
        await session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(seq=2))
        await session.execute(update(AuditEvent).where(AuditEvent.seq == -2).values(seq=4))
    verdict = await audit.verify(db=db, scope=acme.tenant.scope)
    assert not verdict.intact and verdict.first_broken_seq == 2


# Edits that leave a stored value unreadable, and what verify says of them. PostgreSQL refuses malformed JSON
# or dates itself, but holds JSON that is not an object, and instants beyond Python's year 9999.
UNREADABLE_EDITS = {
    "sqlite": [
        ("details", "'{broken'", "details is not a JSON object"),
        ("occurred_at", "'yesterday'", "occurred_at is not a date-time"),
        ("details", """'{"reason": 1e400}'""", "details is not a JSON object"),
        # Not UTF-8: sqlite3 would fail the whole fetch decoding it.
        ("target_id", "CAST(X'80' AS TEXT)", "target_id is not text"),
    ],
    "postgres": [
        ("details", "'null'::json", "details is not a JSON object"),
        ("occurred_at", "'20000-01-01'", "occurred_at is not a date-time"),
        ("details", """'{"reason": 1e400}'::json""", "details is not a JSON object"),
        # Valid JSON that Python's parser refuses: asyncpg would fail the whole fetch decoding it.
        ("details", """('{"n": 1' || repeat('0', 5000) || '}')::json""", "details is not a JSON object"),
    ],
}


async def spoil_the_first_test_event(owner_db: Database, who: TenantCredentials, column: str, value: str) -> int:
    """Edits one stored value of the tenant's first `test.event` into one that cannot be read; returns its seq."""
    async with owner_db.tenant_session(who.tenant.scope, write=True) as session:
        seq = await session.scalar(
            select(func.min(AuditEvent.seq)).where(
                AuditEvent.tenant_id == who.tenant.id, AuditEvent.action == "test.event"
            )
        )
        await session.execute(
            update(AuditEvent)
            .where(AuditEvent.tenant_id == who.tenant.id, AuditEvent.seq == seq)
            .values({column: literal_column(value)})
        )
    assert isinstance(seq, int)
    return seq


@pytest.mark.parametrize("edit", [0, 1, 2, 3])
async def test_an_event_that_cannot_be_read_breaks_the_chain_there_and_others_are_still_checked(
    client: httpx.AsyncClient,
    db: Database,
    owner_db: Database,
    acme: TenantCredentials,
    globex: TenantCredentials,
    backend: str,
    edit: int,
) -> None:
    column, value, why = UNREADABLE_EDITS[backend][edit]
    await write_events(db, acme, 5)
    await write_events(db, globex, 2)
    seq = await spoil_the_first_test_event(owner_db, acme, column, value)
    verdict = (await client.get("/v1/audit/verify", headers=acme.headers)).json()
    assert verdict == {
        "intact": False,
        "events_checked": seq - 1,
        "first_broken_seq": seq,
        "reason": f"event {seq} cannot be read: {why}",
    }
    assert (await audit.verify(db=db, scope=globex.tenant.scope)).intact


@pytest.mark.parametrize("edit", [0, 1, 2, 3])
async def test_an_event_that_cannot_be_read_is_listed_with_what_can_be_and_what_cannot(
    client: httpx.AsyncClient, db: Database, owner_db: Database, acme: TenantCredentials, backend: str, edit: int
) -> None:
    column, value, why = UNREADABLE_EDITS[backend][edit]
    await write_events(db, acme, 5)
    seq = await spoil_the_first_test_event(owner_db, acme, column, value)
    listed = await client.get("/v1/audit/events", params={"action": "test.event"}, headers=acme.headers)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [event["seq"] for event in items] == list(range(seq + 4, seq - 1, -1))
    *sound, spoiled = items
    assert all(event["unreadable"] == {} for event in sound)
    assert spoiled["unreadable"] == {column: why.removeprefix(f"{column} is ")} and spoiled[column] is None
    assert (spoiled["action"], spoiled["outcome"], spoiled["actor_kind"]) == ("test.event", "success", "system")
    assert spoiled["prev_hash"] and spoiled["hash"]
    assert spoiled["details" if column == "occurred_at" else "occurred_at"] is not None


async def test_concurrent_writers_never_fork_a_chain(
    db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    already = {t.tenant.id: (await audit.verify(db=db, scope=t.tenant.scope)).events_checked for t in (acme, globex)}
    writer = audit.AuditWriter(db)
    writer.start()
    try:
        await asyncio.gather(
            *(writer.write(t.tenant.scope, audit.AuditRecord(action="x")) for t in [acme, globex] * 40),
            *(write_events(db, acme, 1) for _ in range(10)),
        )
    finally:
        await writer.stop()
    for who, expected in ((acme, 50), (globex, 40)):
        verdict = await audit.verify(db=db, scope=who.tenant.scope)
        assert verdict.intact and verdict.events_checked == already[who.tenant.id] + expected
        async with db.tenant_session(who.tenant.scope) as session:
            tenants = set(
                await session.scalars(select(AuditEvent.tenant_id).where(AuditEvent.tenant_id == who.tenant.id))
            )
        assert tenants == {who.tenant.id}


async def test_verifying_while_another_process_appends_never_reports_a_break(
    db: Database, settings: Settings, acme: TenantCredentials
) -> None:
    await write_events(db, acme, 300)
    other_process = Database(settings.resolved_database_url, schema=settings.database_schema)
    stop = asyncio.Event()

    async def append_until_stopped() -> int:
        appended = 0
        while not stop.is_set():
            await write_events(other_process, acme, 1)
            appended += 1
        return appended

    appender = asyncio.create_task(append_until_stopped())
    try:
        verdicts = [await audit.verify(db=db, scope=acme.tenant.scope) for _ in range(15)]
    finally:
        stop.set()
        appended = await appender
        await other_process.dispose()
    assert [v for v in verdicts if not v.intact] == []
    assert appended > 0
    final = await audit.verify(db=db, scope=acme.tenant.scope)
    assert final.intact and final.events_checked >= 300 + appended


async def test_auditors_read_their_tenants_chain_newest_first_page_by_page(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    await write_events(db, acme, 5)
    await write_events(db, globex, 3)
    auditor = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.AUDITOR)}"}
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/audit/events", params=params, headers=auditor)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    sequence = [event["seq"] for event in seen]
    assert sequence == sorted(sequence, reverse=True) and sequence[-1] == 1 and len(set(sequence)) == len(sequence)
    async with db.tenant_session(acme.tenant.scope) as session:
        stored = await session.scalar(select(func.count()).where(AuditEvent.tenant_id == acme.tenant.id))
    assert len(seen) == stored
    assert [e["action"] for e in seen].count("test.event") == 5  # none of globex's three
    only = (await client.get("/v1/audit/events", params={"action": "test.event"}, headers=auditor)).json()
    assert [e["details"]["n"] for e in only["items"]] == [4, 3, 2, 1, 0]
    verdict = (await client.get("/v1/audit/verify", headers=auditor)).json()
    assert verdict == {"intact": True, "events_checked": len(seen), "first_broken_seq": None, "reason": None}


async def test_the_verify_route_reports_where_the_chain_breaks(
    client: httpx.AsyncClient, db: Database, owner_db: Database, acme: TenantCredentials
) -> None:
    await write_events(db, acme, 5)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(outcome="failure"))
    verdict = (await client.get("/v1/audit/verify", headers=acme.headers)).json()
    assert (verdict["intact"], verdict["first_broken_seq"]) == (False, 2)


async def test_the_list_follows_the_hashed_chain_order_not_the_unhashed_ids(
    client: httpx.AsyncClient, db: Database, owner_db: Database, acme: TenantCredentials
) -> None:
    await write_events(db, acme, 3)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        first = await session.scalar(select(AuditEvent).where(AuditEvent.seq == 1))
        assert first is not None
        first.id = new_id()  # now the newest id of all
    listed = (await client.get("/v1/audit/events", headers=acme.headers)).json()["items"]
    assert [event["seq"] for event in listed] == sorted((event["seq"] for event in listed), reverse=True)


async def test_a_cursor_that_names_none_of_the_tenants_events_is_refused_not_an_empty_page(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    """The list is in chain order and a cursor names the event it continues after: one that names no event of
    the tenant's chain (made up, another list's, another tenant's) marks no position, and an empty page would
    pass it off as the end of the trail."""
    await write_events(db, acme, 3)
    await write_events(db, globex, 3)
    theirs = (await client.get("/v1/audit/events", params={"limit": 1}, headers=globex.headers)).json()
    predicted = await client.post("/v1/predictions", json={"source": "s", "values": [1.0] * 8}, headers=acme.headers)
    assert predicted.status_code == 201
    for names in (theirs["next_cursor"], encode_cursor(uuid.UUID(predicted.json()["id"])), encode_cursor(new_id())):
        refused = await client.get("/v1/audit/events", params={"cursor": names}, headers=acme.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["query", "cursor"]
    ours = (await client.get("/v1/audit/events", params={"limit": 1}, headers=acme.headers)).json()
    following = await client.get("/v1/audit/events", params={"cursor": ours["next_cursor"]}, headers=acme.headers)
    assert following.status_code == 200 and following.json()["items"]
