"""Replicas that start together register the built-in model's new version once (migrations: tests/integration)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from sqlalchemy import delete, func, select

from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.models.models import Model
from qortex.models.service import register_builtin_models
from tests.conftest import TenantCredentials


async def test_replicas_registering_a_new_model_version_at_once_share_one_row(
    app: FastAPI, db: Database, settings: Settings, acme: TenantCredentials
) -> None:
    scope = acme.tenant.scope
    async with db.tenant_session(scope, write=True) as session:  # as if a new version had just shipped
        await session.execute(delete(Model).where(Model.tenant_id == acme.tenant.id))
    replicas = [Database(settings.resolved_database_url, schema=settings.database_schema) for _ in range(4)]
    try:
        registered = await asyncio.gather(*(register_builtin_models(db=replica, scope=scope) for replica in replicas))
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))
    assert len({model.id for model in registered}) == 1
    async with db.tenant_session(scope) as session:
        assert await session.scalar(select(func.count()).select_from(Model)) == 1
