"""A background task that takes everything waiting in its queue and handles it as one group.

Group commit (many requests' rows, or audit events, in one transaction) is built on it: callers put
an item with a future and wait; the worker handles whatever has gathered while the previous group
was being handled. Items already taken when the task is stopped are still handled, and so are the
ones left in the queue, so nothing a caller waits for is dropped at shutdown.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, Generic, Protocol, TypeVar


class Awaited(Protocol):
    """An item its caller waits on; settled once handled."""

    done: asyncio.Future[Any]


T = TypeVar("T", bound=Awaited)


class GroupWorker(ABC, Generic[T]):
    def __init__(self, *, name: str, max_group: int) -> None:
        self._name = name
        self._max_group = max_group
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    @abstractmethod
    async def handle(self, group: list[T]) -> None:
        """Handles one group; must settle every item's future, with a result or an exception."""

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        left = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        await self._handle_unsettled(left)

    def put(self, item: T) -> None:
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            try:
                while len(group) < self._max_group and not self._queue.empty():
                    group.append(self._queue.get_nowait())
                await self.handle(group)
            except asyncio.CancelledError:
                # Stopped mid-group: finish what was not handled yet, and nothing twice.
                await asyncio.shield(self._handle_unsettled(group))
                raise

    async def _handle_unsettled(self, group: list[T]) -> None:
        unsettled = [item for item in group if not item.done.done()]
        if unsettled:
            await self.handle(unsettled)
