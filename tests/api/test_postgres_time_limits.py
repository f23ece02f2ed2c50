"""PostgreSQL: the application waits a bounded time for locks and statements, then answers 503."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from qortex.api import create_app
from qortex.core.config import Settings
from qortex.core.database import Database
from tests.conftest import make_tenant, require_service


@pytest.fixture
def backend(postgres_problem: str | None) -> str:
    """Lock and statement timeouts are PostgreSQL settings."""
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    return "postgres"


async def test_the_app_role_has_time_limits_and_the_migrator_none(db: Database, owner_db: Database) -> None:
    async with db.engine.connect() as conn:
        limits = [
            (await conn.execute(text(f"SHOW {name}"))).scalar_one() for name in ("lock_timeout", "statement_timeout")
        ]
    assert limits == ["10s", "30s"]
    unbounded = Database(owner_db.url, time_limits=False)
    try:
        async with unbounded.engine.connect() as conn:
            assert (await conn.execute(text("SHOW lock_timeout"))).scalar_one() == "0"
    finally:
        await unbounded.dispose()


async def test_a_prediction_waiting_on_a_held_lock_is_a_503_after_the_lock_timeout(
    settings: Settings, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qortex.core.database.POSTGRES_LOCK_TIMEOUT", "200ms")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        tenant = await make_tenant(application.state.services.db, "acme")
        body = {"source": "s", "values": [1.0, 2, 3, 4, 5, 6, 7, 8]}
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
            async with owner_db.engine.connect() as holder:
                await holder.execute(text("BEGIN"))
                await holder.execute(text("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE"))
                refused = await client.post("/v1/predictions", json=body, headers=tenant.headers)
                await holder.execute(text("ROLLBACK"))
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"] == "https://qortex.dev/problems/storage-unavailable"
            assert (await client.post("/v1/predictions", json=body, headers=tenant.headers)).status_code == 201
