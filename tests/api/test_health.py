"""Health, OpenAPI and request ids."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import ANY

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from qortex.core.database import Database
from qortex.web.problems import PROBLEM_JSON
from tests.conftest import TenantCredentials


async def test_liveness_and_readiness_need_no_credential(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "engine", "disk"}
    assert ready.json()["checks"]["engine"]["detail"] == "queue depth 0 (0 series)"


async def ready_on(client: httpx.AsyncClient, app: FastAPI, db: Database) -> httpx.Response:
    """/health/ready while the app's database is `db` (disposed afterwards, the app's own put back)."""
    services = app.state.services
    own = services.db
    services.db = db
    try:
        return await client.get("/health/ready")
    finally:
        await db.dispose()
        services.db = own


async def test_readiness_reports_a_failing_database(client: httpx.AsyncClient, app: FastAPI) -> None:
    ready = await ready_on(client, app, Database("postgresql://nobody@127.0.0.1:1/none"))
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "failing"


async def test_readiness_reports_a_database_that_answers_but_has_no_schema(
    client: httpx.AsyncClient, app: FastAPI, tmp_path: Path
) -> None:
    ready = await ready_on(client, app, Database(f"sqlite:///{tmp_path}/empty.db"))  # answers, holds no table
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == {
        "status": "failing",
        "detail": "the database has no schema",
        "ms": ANY,
    }


async def test_readiness_says_why_the_engine_and_the_disk_fail(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks' own findings name no host or user, so an operator is told them, not only an exception's type."""
    services = app.state.services
    monkeypatch.setattr(type(services.batcher), "running", property(lambda _: False))
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(free=4096))
    checks = (await client.get("/health/ready")).json()["checks"]
    assert checks["engine"]["detail"] == "engine batcher is not running"
    assert checks["disk"]["detail"] == "only 4096 bytes free in the data directory"
    assert checks["database"]["status"] == "ok"


@pytest.mark.parametrize(
    ("task", "finding"),
    [
        ("qortex-group-commit", "the group commit is not running"),
        ("qortex-audit-writer", "the audit writer is not running"),
    ],
)
async def test_readiness_fails_when_a_worker_that_writes_to_the_database_has_died(
    client: httpx.AsyncClient, task: str, finding: str
) -> None:
    """Every prediction waits for the group commit, every audited refusal for the audit writer: with either dead,
    those requests would wait forever while readiness said ok."""
    worker = next(t for t in asyncio.all_tasks() if t.get_name() == task)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == {"status": "failing", "detail": finding, "ms": ANY}
    assert ready.json()["checks"]["engine"]["status"] == "ok"


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/predictions" in spec["paths"] and "/v1/predictions/batch" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_the_openapi_document_describes_errors_as_the_problems_they_are(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """A client generated from /openapi.json must be able to read the errors the API answers."""
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            errors = {status: r for status, r in operation["responses"].items() if not status.startswith(("2", "3"))}
            assert errors, f"{method.upper()} {path} documents no error answer"
            for status, response in errors.items():
                assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
    answered = await client.post("/v1/predictions", json={"source": "s", "values": [1.0]}, headers=acme.headers)
    assert answered.status_code == 422 and answered.headers["content-type"] == PROBLEM_JSON
    reference = spec["paths"]["/v1/predictions"]["post"]["responses"]["default"]["content"][PROBLEM_JSON]["schema"]
    schema = spec["components"]["schemas"][reference["$ref"].rpartition("/")[2]]
    assert set(schema["required"]) <= set(answered.json()) <= set(schema["properties"])


async def test_the_openapi_document_describes_readiness_and_its_503(client: httpx.AsyncClient) -> None:
    responses = (await client.get("/openapi.json")).json()["paths"]["/health/ready"]["get"]["responses"]
    answered = (await client.get("/health/ready")).json()
    for status in ("200", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ReadinessOut"}
    assert set(answered) == {"status", "checks"} and set(answered["checks"]["database"]) == {"status", "detail", "ms"}


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces" and len(generated.headers["x-request-id"]) == 32


async def _readiness_at_revision(client: httpx.AsyncClient, owner_db: Database, revision: str) -> httpx.Response:
    """What /health/ready answers while the database's schema reads as being at `revision`."""
    async with owner_db.engine.begin() as conn:
        current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    try:
        return await client.get("/health/ready")
    finally:
        async with owner_db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})


async def test_readiness_fails_on_a_schema_older_than_the_code(client: httpx.AsyncClient, owner_db: Database) -> None:
    ready = await _readiness_at_revision(client, owner_db, "0004")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["detail"] == (
        "the database's schema is at revision 0004, older than the one this code needs"
    )
    assert (await client.get("/health/ready")).status_code == 200


async def test_a_replica_stays_ready_when_a_newer_release_migrates_the_schema(
    client: httpx.AsyncClient, owner_db: Database
) -> None:
    """A rolling upgrade migrates first; the previous release's replicas must keep serving until replaced."""
    ready = await _readiness_at_revision(client, owner_db, "9001_from_a_newer_release")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["detail"] == (
        "reachable, migrated by a newer release (revision 9001_from_a_newer_release)"
    )
