"""Async database access: one engine per process, and sessions that always carry a tenant scope.

SQLite (embedded default) runs in WAL mode with `synchronous=FULL`, so a committed write survives a
kill; write transactions start with `BEGIN IMMEDIATE` so concurrent writers queue on the busy timeout
instead of failing on a lock upgrade. On PostgreSQL every tenant transaction sets `qortex.tenant_id`
transaction-locally, which row-level security policies read.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

import aiosqlite
import structlog
from sqlalchemy import DateTime, Table, event, text
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from qortex.core.errors import StorageUnavailable

log = structlog.get_logger("qortex.core.database")

# Another process holding SQLite's write lock (a CLI command, a backup) is waited for this long, then the
# request is answered 503: a client should not hang on it (this process's own writers queue on a lock).
SQLITE_BUSY_TIMEOUT_MS = 10_000
# PostgreSQL: how long the application waits for a row or table lock, and for any one statement, before
# answering 503 instead of hanging with the database (migrations, run as the owner, have no such limit).
POSTGRES_LOCK_TIMEOUT = "10s"
POSTGRES_STATEMENT_TIMEOUT = "30s"
# SQLSTATE classes and codes that mean the database cannot serve now, not that the request is wrong:
# connection exceptions, insufficient resources (disk full), operator intervention (terminated, cancelled
# by the statement timeout), lock not available, serialisation failure, deadlock, and a write refused as
# read-only (a standby reached after a failover, or a primary put in read-only mode).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "55P03", "40001", "40P01", "25006")
# SQLite's result codes (extended ones start with these) for the same: locked by another process, disk
# full, I/O failing, file not openable, out of memory, and a write refused as read-only (a file system
# remounted read-only after a disk error, or files whose permissions an operator changed). A missing table
# is not among them: that is a database nobody migrated, which no retry fixes.
_UNAVAILABLE_SQLITE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_NOMEM",
    "SQLITE_READONLY",
)


def storage_unavailable(error: BaseException) -> bool:
    """Whether a database error says the database cannot serve now (retry later), not that the request is wrong."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    # asyncpg reports a connection lost mid-operation as an interface or internal client error.
    if error.connection_invalidated or isinstance(error, InterfaceError | InternalError):
        return True
    sqlite_name = getattr(error.orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        return sqlite_name.startswith(_UNAVAILABLE_SQLITE)
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


# SQLite gives its -wal and -shm files the database file's permissions.
_SQLITE_COMPANIONS = ("", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class TenantScope:
    """The tenant a unit of work acts for; every repository function requires one."""

    tenant_id: uuid.UUID


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use qortex.core.clock.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


@dataclass(frozen=True, slots=True)
class TableRows:
    """New rows of one table as column dicts: stored with one multi-row INSERT, without ORM bookkeeping.

    For hot paths that write many rows and never read them back as objects (a batch of predictions).
    """

    table: Table
    rows: Sequence[dict[str, Any]]


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def make_sqlite_file_private(url: str) -> None:
    """Creates the database file readable and writable by this user only, or makes an existing one so.

    It holds every tenant's data, password hashes and signing secrets; the umask would leave it
    readable by every local user. A file owned by someone else is left for its owner to fix.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite itself reports the missing directory
    with suppress(FileExistsError, PermissionError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for suffix in _SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        with suppress(FileNotFoundError, PermissionError):
            mode = companion.stat().st_mode
            if mode & 0o077:
                companion.chmod(stat.S_IMODE(mode) & 0o700)  # only taken away: a read-only file stays so


def _open_sqlite(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, aiosqlite.Connection]:
    """`aiosqlite.connect` as SQLAlchemy calls it, except that a connection that fails to open waits for its thread.

    aiosqlite stops that thread without waiting for it: had the event loop closed first (a command failing at once on
    a database file it cannot open), the thread would die printing a traceback after the command's one-line error.
    """
    connection = aiosqlite.connect(*args, **kwargs)
    # Before 0.22 the connection was itself the thread. Daemon, as SQLAlchemy makes it: no exit waits on it.
    thread = connection if isinstance(connection, Thread) else connection._thread
    thread.daemon = True

    async def _opened() -> aiosqlite.Connection:
        try:
            return await connection
        except Exception:
            await asyncio.to_thread(thread.join)
            raise

    return _opened()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin) instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        # A writer that queued behind this process's other writers has only the rest of its busy timeout left.
        busy_ms = options.get("qortex_busy_ms", SQLITE_BUSY_TIMEOUT_MS)
        if conn.info.get("qortex_busy_ms", SQLITE_BUSY_TIMEOUT_MS) != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(busy_ms)}")
            conn.info["qortex_busy_ms"] = busy_ms
        mode = "IMMEDIATE" if options.get("qortex_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


async def allow_lookup(session: AsyncSession, name: str, value: str) -> None:
    """Lets this transaction read the rows a pre-tenant lookup names (PostgreSQL row-level security).

    Only the SELECT policies keyed on `qortex.lookup_<name>` honour it, and only for rows matching
    `value`; it ends with the transaction. SQLite has no row-level security, so there it does nothing.
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(
            text("SELECT set_config(:setting, :value, true)"), {"setting": f"qortex.lookup_{name}", "value": value}
        )


# PostgreSQL URL query parameters, passed to asyncpg's connect() with the type it needs: SQLAlchemy passes
# them on as strings, and asyncpg refuses a name it does not know (libpq's `sslmode` among them).
_POSTGRES_QUERY_TYPES: dict[str, type[float] | type[int] | type[str]] = {
    "ssl": str,
    "timeout": float,
    "command_timeout": float,
    "statement_cache_size": int,
    "max_cached_statement_lifetime": int,
    "max_cacheable_statement_size": int,
    "target_session_attrs": str,
}
_POSTGRES_QUERY_ALIASES = {"sslmode": "ssl", "connect_timeout": "timeout"}  # libpq's names
# Read by SQLAlchemy itself, so left in the URL: `host` (a socket directory, or several hosts to try in turn) and
# the size of its own prepared-statement cache (0 behind PgBouncer in transaction mode).
_POSTGRES_URL_QUERY = frozenset({"host", "prepared_statement_cache_size"})


def postgres_connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """The URL, its query down to what SQLAlchemy reads itself, and the rest as asyncpg connect() arguments.

    ValueError names a parameter that is unknown, given twice or not a number where one is needed.
    """
    parsed = make_url(url)
    args: dict[str, Any] = {}
    kept = {name: value for name, value in parsed.query.items() if name in _POSTGRES_URL_QUERY}
    cache_size = kept.get("prepared_statement_cache_size")
    if cache_size is not None and not (isinstance(cache_size, str) and cache_size.isascii() and cache_size.isdigit()):
        raise ValueError(f"database URL parameter prepared_statement_cache_size={cache_size!r} must be a number")
    for name, value in parsed.query.items():
        if name in kept:
            continue
        if name == "application_name" and isinstance(value, str):
            args.setdefault("server_settings", {})["application_name"] = value
            continue
        key = _POSTGRES_QUERY_ALIASES.get(name, name)
        kind = _POSTGRES_QUERY_TYPES.get(key)
        if kind is None:
            known = sorted({*_POSTGRES_QUERY_TYPES, *_POSTGRES_QUERY_ALIASES, *_POSTGRES_URL_QUERY, "application_name"})
            raise ValueError(f"database URL parameter {name!r} is not supported; use one of {', '.join(known)}")
        if not isinstance(value, str) or key in args:
            raise ValueError(f"database URL parameter {name!r} is given more than once")
        try:
            args[key] = kind(value)
        except ValueError:
            raise ValueError(f"database URL parameter {name}={value!r} must be a number") from None
    return parsed.set(query=kept).render_as_string(hide_password=False), args


class Database:
    """The process's connection pool and the only way to open a transaction."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False, time_limits: bool = True) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # hide_parameters: error messages (and so logs) never carry payload values or personal data.
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": not self.is_sqlite, "hide_parameters": True}
        if self.is_sqlite:
            make_sqlite_file_private(self.url)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "async_creator_fn": _open_sqlite}
        else:
            kwargs.update(pool_size=10, max_overflow=20)
            self.url, connect_args = postgres_connect_args(self.url)
            server_settings = connect_args.setdefault("server_settings", {})
            if schema:
                server_settings["search_path"] = schema
            if time_limits:
                server_settings.update(lock_timeout=POSTGRES_LOCK_TIMEOUT, statement_timeout=POSTGRES_STATEMENT_TIMEOUT)
            kwargs["connect_args"] = connect_args
        self.engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite admits one writer at a time. Queueing writers here wakes the next one as soon as the
        # previous commits, instead of leaving them in SQLite's busy handler, which sleeps up to 100 ms.
        self._sqlite_writer = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self, *, write: bool, snapshot: bool = False) -> AsyncIterator[AsyncSession]:
        committing = False
        # Options given when the session first takes its connection reach the BEGIN hook above.
        options: dict[str, Any] = {"qortex_write": write}
        try:
            async with AsyncExitStack() as stack:
                if write and self.is_sqlite:
                    options["qortex_busy_ms"] = await self._sqlite_writer_turn()
                    stack.callback(self._sqlite_writer.release)
                session = await stack.enter_async_context(self._sessions())
                await stack.enter_async_context(session.begin())
                if snapshot and not self.is_sqlite:
                    # A SQLite transaction reads one snapshot already; PostgreSQL's default gives each statement
                    # its own.
                    options["isolation_level"] = "REPEATABLE READ"
                try:
                    await session.connection(execution_options=options)
                except (OSError, TimeoutError) as error:
                    # The driver could not even connect (refused, unresolvable, timed out): not wrapped by
                    # SQLAlchemy, and only here, at checkout, does it mean the database is unreachable.
                    log.warning("storage_unavailable", error_type=type(error).__name__)
                    raise StorageUnavailable() from error
                yield session
                # Rows still pending are written now, before COMMIT: a failure here leaves nothing stored.
                await session.flush()
                committing = True
        except (DBAPIError, PoolTimeout) as error:
            if not storage_unavailable(error):
                raise
            # Rolled back, so nothing of it is stored and the client may retry; except a PostgreSQL COMMIT whose
            # connection failed, which the server may have carried out (SQLite commits in this process).
            log.warning(
                "storage_unavailable", error_type=type(error.orig if isinstance(error, DBAPIError) else error).__name__
            )
            raise StorageUnavailable(outcome_unknown=committing and not self.is_sqlite) from error

    async def _sqlite_writer_turn(self) -> int:
        """Takes this process's SQLite writer lock; returns the milliseconds left to wait for another process's.

        One busy timeout bounds both waits: were each writer given a whole one after its turn came, writers queued
        behind another process's lock would be refused one busy timeout after another, the last after minutes.
        """
        budget_ms = SQLITE_BUSY_TIMEOUT_MS
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget_ms / 1000):
                await self._sqlite_writer.acquire()
        except TimeoutError:
            log.warning("storage_unavailable", error_type="WriterQueueTimeout")
            raise StorageUnavailable() from None
        # Whole milliseconds: a turn taken at once leaves the busy timeout as it is (no PRAGMA to send).
        return max(1, budget_ms - int((time.monotonic() - started) * 1000))

    @asynccontextmanager
    async def tenant_session(
        self, scope: TenantScope, *, write: bool = False, snapshot: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """One transaction on behalf of one tenant; commits on success, rolls back on error.

        `snapshot`: every statement sees the database as of the first one (for reads that must agree).
        """
        async with self._transaction(write=write, snapshot=snapshot) as session:
            if not self.is_sqlite:
                await session.execute(
                    text("SELECT set_config('qortex.tenant_id', :tenant, true)"),
                    {"tenant": str(scope.tenant_id)},
                )
            yield session

    @asynccontextmanager
    async def system_session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction for operations that precede a tenant: creating tenants, resolving credentials."""
        async with self._transaction(write=write) as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
