"""A background task that takes everything waiting in its queue and handles it as one group.

Group commit (many requests' rows, or audit events, in one transaction) is built on it: callers put
an item with a future and wait; the worker handles whatever has gathered while the previous group
was being handled. Stopping lets the group being handled finish (cancelling it mid-commit could
leave a transaction committed that would then be handled again) and then handles everything still
queued, so nothing a caller waits for is dropped or handled twice. Once stopping has begun, new
items are refused at once with 503 instead of waiting on a queue that nobody reads any more.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar, cast

import structlog

from qortex.core.errors import Overloaded

log = structlog.get_logger("qortex.resilience.group_worker")


class Awaited(Protocol):
    """An item its caller waits on; settled once handled."""

    done: asyncio.Future[Any]


T = TypeVar("T", bound=Awaited)

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

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Returns once every item put before it has been handled."""
        self._stopping = True
        self._queue.put_nowait(_STOP)
        if self._worker is None:  # never started: handle what was put here
            await self._run()
            return
        # Shielded: a cancelled shutdown must not cancel a group mid-commit either.
        await asyncio.shield(self._worker)
        self._worker = None

    async def settled(self) -> None:
        """Returns once every item put before it has been handled (for work queued without waiting on it)."""
        if self._worker is None or self._stopping:
            raise RuntimeError(f"{self._name} is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Settled(done))
        await done

    def put(self, item: T) -> None:
        if self._stopping:
            raise Overloaded("the server is shutting down", retry_after_seconds=1)
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
            for item in group:
                if not item.done.done():
                    item.done.set_exception(error)
            with suppress(Exception):  # a log that cannot be written must not stop the worker either
                log.exception("group_failed", worker=self._name, error_type=type(error).__name__)
