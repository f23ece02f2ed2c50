"""Which database errors mean "the database cannot serve now" (503, retry) rather than a bug or bad input."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tests.api.test_limits import used_today
from tests.conftest import POSTGRES_URL, make_tenant, require_service

from qortex.api import create_app
from qortex.core.config import Settings
from qortex.core.database import Database, storage_unavailable
from qortex.core.errors import StorageUnavailable
from qortex.models import service as model_service
from qortex.security.rbac import Role


class PostgresError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("57014", True),  # cancelled by statement_timeout
        ("57P01", True),  # terminated by an administrator
        ("55P03", True),  # lock_timeout
        ("53100", True),  # disk full
        ("08006", True),  # connection failure
        ("40P01", True),  # deadlock
        ("25006", True),  # read-only: a standby after a failover, or a primary put in read-only mode
        ("23505", False),  # unique violation: a race or a bug, not an outage
        ("42P01", False),  # undefined table: nobody migrated
        ("22001", False),  # value too long
    ],
)
def test_postgresql_errors_by_sqlstate(sqlstate: str, unavailable: bool) -> None:
    error = DBAPIError("INSERT ...", None, PostgresError(sqlstate))
    assert storage_unavailable(error) is unavailable


def test_sqlite_errors_by_result_code(tmp_path: Path) -> None:
    missing_table = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as no_table:
        missing_table.execute("SELECT * FROM nowhere")
    assert not storage_unavailable(DBAPIError("SELECT", None, no_table.value))
    holder = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(tmp_path / "q.db", timeout=0.05)
    with pytest.raises(sqlite3.OperationalError) as busy:
        waiter.execute("CREATE TABLE t (x)")
    assert storage_unavailable(DBAPIError("CREATE", None, busy.value))


def test_pool_exhaustion_is_unavailable_and_other_errors_are_not() -> None:
    assert storage_unavailable(PoolTimeout("QueuePool limit reached"))
    assert not storage_unavailable(IntegrityError("INSERT", None, Exception("duplicate")))
    assert not storage_unavailable(ProgrammingError("SELECT", None, Exception("syntax")))
    assert not storage_unavailable(ValueError("not a database error"))


async def _database_locked_by_another_process(tmp_path: Path, lock: str) -> tuple[Database, sqlite3.Connection]:
    """A SQLite database with a table `t`, and another connection holding a `BEGIN <lock>` on it."""
    db = Database(f"sqlite:///{tmp_path}/q.db")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    holder.execute(f"BEGIN {lock}")
    return db, holder


async def test_a_transaction_refused_by_a_locked_database_is_a_503_that_stored_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qortex.core.database.SQLITE_BUSY_TIMEOUT_MS", 100)
    db, holder = await _database_locked_by_another_process(tmp_path, "EXCLUSIVE")
    with pytest.raises(StorageUnavailable) as refused:
        async with db.system_session(write=True) as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    holder.rollback()
    holder.close()
    async with db.system_session() as session:
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    await db.dispose()


async def test_writers_queued_behind_another_process_s_lock_each_wait_one_busy_timeout_not_their_turn_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's writers take turns; a turn spent waiting for another process's lock counts against the
    busy timeout of every writer queued behind it, so none waits a multiple of it (eight writers: not 8 x 0.4 s)."""
    monkeypatch.setattr("qortex.core.database.SQLITE_BUSY_TIMEOUT_MS", 400)
    db, holder = await _database_locked_by_another_process(tmp_path, "IMMEDIATE")

    async def write() -> float:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            async with db.system_session(write=True) as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
        return time.monotonic() - started

    waited = await asyncio.gather(*(write() for _ in range(8)))
    assert max(waited) < 1.2, waited
    holder.rollback()

    async def insert(hold_seconds: float) -> None:
        async with db.system_session(write=True) as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(hold_seconds)

    # The second writer queues 0.2 s behind the first, then stores with what is left of its wait; the shortened
    # wait is not left on the connection for the next writer, which gets the whole busy timeout again.
    await asyncio.gather(insert(0.2), insert(0))
    holder.execute("BEGIN IMMEDIATE")
    assert await write() >= 0.35
    holder.rollback()
    holder.close()
    async with db.system_session() as session:
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
    await db.dispose()


async def test_a_prediction_while_another_process_locks_the_database_is_a_503_problem_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor charged: the 503 says nothing was stored, so the daily quota does not count it (nor a retry twice)."""
    monkeypatch.setattr("qortex.core.database.SQLITE_BUSY_TIMEOUT_MS", 200)
    settings = Settings(env="test", data_dir=tmp_path / "data")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        tenant = await make_tenant(application.state.services.db, "acme")
        transport = httpx.ASGITransport(app=application)
        body = {"source": "s", "values": [1.0, 2, 3, 4, 5, 6, 7, 8]}
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
            holder = sqlite3.connect(tmp_path / "data" / "qortex.db", isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                refused = [await client.post("/v1/predictions", json=body, headers=tenant.headers) for _ in range(3)]
                batch = {"items": [body] * 50}
                refused.append(await client.post("/v1/predictions/batch", json=batch, headers=tenant.headers))
            finally:
                holder.rollback()
                holder.close()
            assert [answer.status_code for answer in refused] == [503] * 4, refused[0].text
            assert refused[0].json()["type"] == "https://qortex.dev/problems/storage-unavailable"
            assert int(refused[0].headers["retry-after"]) >= 1
            assert (await client.get("/v1/predictions", headers=tenant.headers)).json()["items"] == []
            assert await used_today(client, tenant) == 0
            assert (await client.post("/v1/predictions", json=body, headers=tenant.headers)).status_code == 201
            assert await used_today(client, tenant) == 1


async def test_a_database_server_that_refuses_connections_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database(f"postgresql://postgres@127.0.0.1:{port}/test")
    with pytest.raises(StorageUnavailable):
        async with db.system_session():
            pass
    await db.dispose()


async def test_a_batch_whose_model_lookup_meets_an_unavailable_database_is_refused_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A per-item 503 would be stored as that item's answer, and replayed for the Idempotency-Key forever."""
    application = create_app(Settings(env="test", data_dir=tmp_path / "data"))
    async with application.router.lifespan_context(application):
        tenant = await make_tenant(application.state.services.db, "acme")
        headers = {**tenant.headers, "Idempotency-Key": "k1"}
        body = {
            "items": [{"source": "a", "values": [1.0] * 8, "model": "default"}, {"source": "b", "values": [2.0] * 8}]
        }
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
            resolve = model_service.resolve

            async def unavailable(**kwargs: object) -> object:
                if kwargs.get("reference") == "default":
                    raise StorageUnavailable()
                return await resolve(**kwargs)  # type: ignore[arg-type]

            monkeypatch.setattr(model_service, "resolve", unavailable)
            refused = await client.post("/v1/predictions/batch", json=body, headers=headers)
            assert refused.status_code == 503
            monkeypatch.setattr(model_service, "resolve", resolve)
            retried = await client.post("/v1/predictions/batch", json=body, headers=headers)
            assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
            assert retried.json()["succeeded"] == 2


async def test_a_write_to_a_read_only_postgresql_database_is_a_503_that_stored_nothing(
    postgres_problem: str | None,
) -> None:
    """A standby reached after a failover, or a primary in read-only mode, cannot serve a write now: retry later."""
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    db = Database(POSTGRES_URL)
    try:
        with pytest.raises(StorageUnavailable) as refused:
            async with db.system_session(write=True) as session:
                await session.execute(text("SET TRANSACTION READ ONLY"))  # what a standby imposes on every one
                await session.execute(text("CREATE TEMPORARY TABLE read_only_probe (x INTEGER)"))
        assert refused.value.status == 503 and "nothing of it was stored" in refused.value.detail
    finally:
        await db.dispose()


async def test_a_write_to_a_read_only_sqlite_database_is_a_503_that_stored_nothing(tmp_path: Path) -> None:
    """A data directory remounted read-only (as a kernel does after a disk error) cannot serve a write now."""
    db = Database(f"sqlite:///{tmp_path}/q.db")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    try:
        with pytest.raises(StorageUnavailable) as refused:
            async with db.system_session(write=True) as session:
                await session.execute(text("PRAGMA query_only = 1"))  # SQLite's own SQLITE_READONLY, as for a ro mount
                await session.execute(text("INSERT INTO t VALUES (1)"))
        assert refused.value.status == 503 and "nothing of it was stored" in refused.value.detail
        async with db.system_session() as session:
            await session.execute(text("PRAGMA query_only = 0"))
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await db.dispose()


class _ProbeBase(DeclarativeBase):
    pass


class _Probe(_ProbeBase):
    __tablename__ = f"flush_probe_{uuid.uuid4().hex[:12]}"

    x: Mapped[int] = mapped_column(primary_key=True)


async def test_rows_that_wait_out_a_postgresql_lock_as_the_transaction_ends_are_a_503_that_stored_nothing(
    postgres_problem: str | None,
) -> None:
    """Rows added but not yet flushed are written as the transaction ends; a lock timeout then is not a lost
    COMMIT (which the server may have carried out): the 503 must say nothing was stored."""
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    table = _Probe.__tablename__
    db, other = Database(POSTGRES_URL), Database(POSTGRES_URL)
    try:
        async with db.system_session(write=True) as session:
            await session.execute(text(f"CREATE TABLE {table} (x INTEGER PRIMARY KEY)"))
        async with other.engine.connect() as holder:
            await holder.execute(text(f"INSERT INTO {table} VALUES (1)"))  # uncommitted: the key is held
            with pytest.raises(StorageUnavailable) as refused:
                async with db.system_session(write=True) as session:
                    await session.execute(text("SET LOCAL lock_timeout = '200ms'"))
                    session.add(_Probe(x=1))
            await holder.rollback()
        assert "nothing of it was stored" in refused.value.detail
    finally:
        async with other.system_session(write=True) as session:
            await session.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.dispose()
        await other.dispose()


@pytest.mark.parametrize("lost", ["before the insert", "before the commit"])
async def test_a_postgresql_connection_lost_during_commit_is_a_503_that_may_have_stored_it(
    postgres_problem: str | None, lost: str
) -> None:
    """Lost before COMMIT, nothing is stored; lost during it, the server may have committed: the 503 says which."""
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    table = f"commit_probe_{uuid.uuid4().hex[:12]}"
    db, killer = Database(POSTGRES_URL), Database(POSTGRES_URL)
    try:
        async with db.system_session(write=True) as session:
            await session.execute(text(f"CREATE TABLE {table} (x INTEGER)"))

        async def terminate(session: AsyncSession) -> None:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with killer.system_session(write=True) as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        with pytest.raises(StorageUnavailable) as refused:
            async with db.system_session(write=True) as session:
                if lost == "before the insert":
                    await terminate(session)
                await session.execute(text(f"INSERT INTO {table} VALUES (1)"))
                if lost == "before the commit":
                    await terminate(session)
        assert refused.value.status == 503
        if lost == "before the insert":
            assert "nothing of it was stored" in refused.value.detail
        else:
            assert "it may have been stored" in refused.value.detail
            assert "same Idempotency-Key" in refused.value.detail
    finally:
        async with killer.system_session(write=True) as session:
            await session.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.dispose()
        await killer.dispose()


BUSY_SECONDS = 0.4
# One busy timeout per tenant, as before, takes at least five of them; one for the group plus a loaded
# machine's request overhead stays well below four.
SEQUENTIAL_BOUND = 4 * BUSY_SECONDS


async def _one_group_of_tenants_while_sqlite_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, worker: str, role: Role
) -> tuple[list[httpx.Response], float]:
    """A prediction request from each of five tenants (keys of `role`), whose items reach the app's group worker
    `worker` together, so they share one group, while another process holds the SQLite file locked."""
    monkeypatch.setattr("qortex.core.database.SQLITE_BUSY_TIMEOUT_MS", int(BUSY_SECONDS * 1000))
    application = create_app(Settings(env="test", data_dir=tmp_path / "data"))
    async with application.router.lifespan_context(application):
        tenants = [await make_tenant(application.state.services.db, f"t{n}", role) for n in range(5)]
        group_worker = getattr(application.state.services, worker)
        arrived: list[Any] = []
        put = group_worker.put

        def put_together(item: Any) -> None:
            arrived.append(item)
            if len(arrived) == len(tenants):
                for each in arrived:
                    put(each)

        monkeypatch.setattr(group_worker, "put", put_together)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
            holder = sqlite3.connect(tmp_path / "data" / "qortex.db", isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                started = time.monotonic()
                answers = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            client.post("/v1/predictions", json={"source": "s", "values": [1.0] * 8}, headers=t.headers)
                            for t in tenants
                        )
                    ),
                    timeout=30,
                )
                waited = time.monotonic() - started
            finally:
                holder.rollback()
                holder.close()
    return answers, waited


async def test_a_locked_sqlite_database_answers_every_tenant_of_a_group_commit_within_one_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tenant's transaction of a group waited out its own busy timeout: the last was answered minutes late."""
    answers, waited = await _one_group_of_tenants_while_sqlite_is_locked(
        tmp_path, monkeypatch, worker="committer", role=Role.OWNER
    )
    assert [a.status_code for a in answers] == [503] * len(answers)
    assert {a.json()["type"] for a in answers} == {"https://qortex.dev/problems/storage-unavailable"}
    assert waited < SEQUENTIAL_BOUND, f"answered after {waited:.1f} s, one busy timeout per tenant"


async def test_a_locked_sqlite_database_answers_every_tenant_of_an_audit_group_within_one_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal waits for its audit event: each tenant's event of a group waited out its own busy timeout, so the
    last tenant's 403 came one busy timeout per tenant late. The refusals stand, their events are reported lost."""
    answers, waited = await _one_group_of_tenants_while_sqlite_is_locked(
        tmp_path, monkeypatch, worker="audit", role=Role.VIEWER
    )
    assert [a.status_code for a in answers] == [403] * len(answers)
    assert waited < SEQUENTIAL_BOUND, f"answered after {waited:.1f} s, one busy timeout per tenant"
    assert capsys.readouterr().out.count('"event":"audit_refusal_not_stored"') == len(answers)
