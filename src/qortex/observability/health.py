"""Liveness and readiness: unauthenticated, cheap, and honest about what is down."""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from qortex.core.migrate import current_revision, head_revision, unknown_revision_problem

router = APIRouter(prefix="/health", tags=["health"])

MIN_FREE_DISK_BYTES = 100 * 1024 * 1024
CHECK_TIMEOUT_SECONDS = 2.0


class CheckOut(BaseModel):
    status: Literal["ok", "failing"]
    detail: str
    ms: float


class ReadinessOut(BaseModel):
    status: Literal["ok", "failing"]
    checks: dict[str, CheckOut]


@router.get("/live")
async def liveness() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


class NotReady(Exception):
    """What a check found wrong, in words of its own that name no host or user, so they are shown."""


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        status = "ok"
    except NotReady as finding:
        detail, status = str(finding), "failing"
    except Exception as error:
        # Unauthenticated callers learn which check fails, not its message (which may name hosts or users).
        detail, status = type(error).__name__, "failing"
    return {"status": status, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 2)}


@router.get(
    "/ready",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "Not ready: `checks` names the failing dependency"}},
)
async def readiness(request: Request) -> JSONResponse:
    """Database (and this process's writers to it), engine, and disk are usable; 503 names the failing one."""
    services = request.app.state.services

    async def database() -> str:
        # Predictions are stored, and audited refusals recorded, by these workers: with one of them dead, those
        # requests would wait forever.
        for worker, name in ((services.committer, "group commit"), (services.audit, "audit writer")):
            if not worker.running:
                raise NotReady(f"the {name} is not running")
        # Reading the schema's version, not only SELECT 1: a database that answers but lost its tables
        # (a replaced file, a dropped schema, missing grants) cannot serve a request.
        revision = await current_revision(services.db)
        if revision is None:
            raise NotReady("the database has no schema")
        if revision == head_revision():
            return "reachable, migrated"
        if unknown_revision_problem(revision) is not None:
            # A rolling upgrade migrates before it replaces replicas, and each release's migrations keep the
            # previous release working (docs/architecture.md): this replica serves on until it is replaced.
            return f"reachable, migrated by a newer release (revision {revision})"
        raise NotReady(f"the database's schema is at revision {revision}, older than the one this code needs")

    async def engine() -> str:
        if not services.batcher.running:
            raise NotReady("engine batcher is not running")
        services.runtime.builtin_default()
        return f"queue depth {services.batcher.queue_depth} ({services.batcher.queued_series} series)"

    async def disk() -> str:
        free = shutil.disk_usage(services.settings.data_dir).free
        if free < MIN_FREE_DISK_BYTES:
            raise NotReady(f"only {free} bytes free in the data directory")
        return f"{free // (1024 * 1024)} MiB free"

    checks = {name: await _timed(check) for name, check in (("database", database), ("engine", engine), ("disk", disk))}
    healthy = all(c["status"] == "ok" for c in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "failing", "checks": checks}, status_code=200 if healthy else 503
    )
