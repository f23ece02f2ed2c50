"""A background task that takes everything waiting in its queue and handles it as one group.

Group commit (many requests' rows, or audit events, in one transaction) is built on it: callers put
an item with a future and wait; the worker handles whatever has gathered while the previous group
was being handled. Stopping lets the group being handled finish (cancelling it mid-commit could
leave a transaction committed that would then be handled again) and then handles everything still
queued, so nothing a caller waits for is dropped or handled twice. Once stopping has begun, new
items are refused at once with 503 instead of waiting on a queue that nobody reads any more.

`TenantGroupWorker` stores a group's items in one transaction per tenant. On SQLite every one of those
transactions waits for the same write lock, so once one finds the database unable to serve (locked by
another process, a full disk), the other tenants' items fail at once with it instead of each waiting out
a busy timeout of its own.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar, cast

import structlog

from qortex.core.database import Database, TenantScope
from qortex.core.errors import Overloaded, StorageUnavailable

log = structlog.get_logger("qortex.resilience.group_worker")


class Awaited(Protocol):
    """An item its caller waits on; settled once handled."""

    done: asyncio.Future[Any]


class TenantItem(Awaited, Protocol):
    """An item that belongs to one tenant, stored in that tenant's transaction."""

    @property
    def scope(self) -> TenantScope: ...


T = TypeVar("T", bound=Awaited)
S = TypeVar("S", bound=TenantItem)

# Put on the queue by stop(): the worker returns when it reaches it.
_STOP = object()


class _Settled:
    """Put on the queue by settled(): resolved once everything put before it has been handled."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done


class GroupWorker(ABC, Generic[T]):
    def __init__(self, *, name: str, max_group: int) -> None:
        self._name = name
        self._max_group = max_group
        self._queue: asyncio.Queue[T | object] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False

    @abstractmethod
    async def handle(self, group: list[T]) -> None:
        """Handles one group; must settle every item's future, with a result or an exception."""

    @property
    def running(self) -> bool:
        """Whether items put now will be handled: started, not stopping, and its task has not died."""
        return self._worker is not None and not self._worker.done() and not self._stopping

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Returns once every item put before it has been handled."""
        self._stopping = True
        self._queue.put_nowait(_STOP)
        if self._worker is None or self._worker.done():  # never started, or died: handle what was put here
            self._worker = None
            await self._run()
            return
        # Shielded: a cancelled shutdown must not cancel a group mid-commit either.
        await asyncio.shield(self._worker)
        self._worker = None

    async def settled(self) -> None:
        """Returns once every item put before it has been handled (for work queued without waiting on it)."""
        if not self.running:  # nothing would ever resolve the marker
            raise RuntimeError(f"{self._name} is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Settled(done))
        await done

    def put(self, item: T) -> None:
        if self._stopping:
            raise Overloaded("the server is shutting down", retry_after_seconds=1)
        if self._worker is not None and self._worker.done():
            # Nothing reads the queue any more: the item would wait for ever (readiness reports the death).
            raise StorageUnavailable()
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        stopped = False
        while not stopped:
            taken = [await self._queue.get()]
            while len(taken) < self._max_group and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            stopped = any(item is _STOP for item in taken)
            markers = [item for item in taken if isinstance(item, _Settled)]
            group = cast("list[T]", [item for item in taken if item is not _STOP and not isinstance(item, _Settled)])
            if group:
                await self._handle_settling_all(group)
            for marker in markers:
                if not marker.done.done():  # its caller may have stopped waiting; the worker must go on
                    marker.done.set_result(None)

    async def _handle_settling_all(self, group: list[T]) -> None:
        try:
            await self.handle(group)
        except Exception as error:  # the worker must outlive any one group, or every later caller waits forever
            fail(group, error)
            with suppress(Exception):  # a log that cannot be written must not stop the worker either
                log.exception("group_failed", worker=self._name, error_type=type(error).__name__)


class TenantGroupWorker(GroupWorker[S]):
    """A group worker that stores each tenant's items of a group in a transaction of their own."""

    def __init__(self, db: Database, *, name: str, max_group: int) -> None:
        super().__init__(name=name, max_group=max_group)
        self._db = db

    @abstractmethod
    async def handle_tenant(self, scope: TenantScope, items: list[S]) -> None:
        """Stores one tenant's items; those it leaves unsettled are settled as stored once it returns."""

    async def handle(self, group: list[S]) -> None:
        by_tenant: dict[TenantScope, list[S]] = {}
        for item in group:
            by_tenant.setdefault(item.scope, []).append(item)
        sqlite_unavailable = False
        for scope, items in by_tenant.items():
            if sqlite_unavailable:  # nothing of these was tried, so nothing was stored
                fail(items, StorageUnavailable())
                continue
            try:
                await self.handle_tenant(scope, items)
            except StorageUnavailable as error:
                # On SQLite every tenant's transaction waits for the same file and write lock: the other tenants
                # of the group are answered at once too, instead of each after its own busy timeout. On
                # PostgreSQL a lock or statement time-out can be one tenant's own, so the others are still tried.
                fail(items, error)
                sqlite_unavailable = self._db.is_sqlite
            except Exception as error:  # each waiting caller learns its items were not stored
                fail(items, error)
            else:
                for item in items:
                    if not item.done.done():
                        item.done.set_result(None)


def fail(items: Sequence[Awaited], error: Exception) -> None:
    """Settles every item not settled yet with `error`."""
    for item in items:
        if not item.done.done():
            item.done.set_exception(error)
