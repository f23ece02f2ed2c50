"""Clean-up that runs in the background of every serving process: rows past the time they are kept for.

Each sweep deletes one tenant's expired rows of one kind (stored Idempotency-Key answers, finished
login sessions, seen request signatures). Every replica sweeps; the deletes are idempotent, so replicas
sweeping at once only repeat each other's work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import Database, TenantScope

log = structlog.get_logger("qortex.housekeeping")

# The first sweep comes soon after start, so a server restarted more often than the interval still sweeps.
FIRST_SWEEP_DELAY_SECONDS = 60.0


async def delete_in_chunks(
    *, db: Database, scope: TenantScope, delete_chunk: Callable[[AsyncSession, int], Awaitable[int]], chunk_size: int
) -> int:
    """Runs `delete_chunk(session, chunk_size)` a transaction at a time until it deletes less than a chunk.

    Short transactions: a first sweep over a large backlog must not hold the write lock for long.
    """
    deleted = 0
    while True:
        async with db.tenant_session(scope, write=True) as session:
            count = await delete_chunk(session, chunk_size)
        deleted += count
        if count < chunk_size:
            return deleted


class Sweep(Protocol):
    async def __call__(self, *, db: Database, scope: TenantScope) -> int:
        """Deletes this tenant's expired rows of one kind; returns how many."""


class Housekeeping:
    """Runs every sweep for every tenant, every `interval_seconds`."""

    def __init__(
        self,
        *,
        db: Database,
        tenant_scopes: Callable[[], Awaitable[Sequence[TenantScope]]],
        sweeps: Mapping[str, Sweep],
        interval_seconds: float,
    ) -> None:
        self._db = db
        self._tenant_scopes = tenant_scopes
        self._sweeps = sweeps
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="qortex-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> dict[str, int]:
        """One pass over every tenant; returns how many rows each sweep deleted.

        A sweep that fails for one tenant is logged and the pass goes on: the others are not left for later.
        """
        swept = dict.fromkeys(self._sweeps, 0)
        for scope in await self._tenant_scopes():
            for name, sweep in self._sweeps.items():
                try:
                    swept[name] += await sweep(db=self._db, scope=scope)
                except Exception as error:
                    log.warning(
                        "sweep_failed", kind=name, tenant_id=str(scope.tenant_id), error_type=type(error).__name__
                    )
        return swept

    async def _run(self) -> None:
        await asyncio.sleep(min(self._interval, FIRST_SWEEP_DELAY_SECONDS))
        while True:
            try:
                for name, count in (await self.sweep()).items():
                    if count:
                        log.info("rows_swept", kind=name, count=count)
            except Exception as error:  # a database hiccup must not end the sweeping for good
                log.warning("housekeeping_failed", error_type=type(error).__name__)
            await asyncio.sleep(self._interval)
