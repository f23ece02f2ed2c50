"""Processes that start together: a SQLite migration waits for another's write; replicas create the first tenant
and register the built-in model's new version once (replicas migrating PostgreSQL at once: tests/integration)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.config import Settings
from qortex.core.database import SQLITE_BUSY_TIMEOUT_MS, Database, TenantScope
from qortex.core.migrate import current_revision, head_revision, migrate
from qortex.engine import Predictor
from qortex.identity import service as identity_service
from qortex.models import repository as model_repository
from qortex.models.models import Model
from qortex.models.runtime import ModelRuntime
from qortex.models.service import register_builtin_models
from qortex.tenants import service as tenant_service
from tests.conftest import TenantCredentials

REPLICAS = 4


def _replicas(settings: Settings) -> list[Database]:
    return [Database(settings.resolved_database_url, schema=settings.database_schema) for _ in range(REPLICAS)]


async def test_a_migration_on_sqlite_waits_for_another_process_writing_instead_of_failing(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path)
    other = sqlite3.connect(tmp_path / "qortex.db", isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE another_process (x)")  # as another `qortex migrate` or `init` would write
        migrating = asyncio.create_task(migrate(settings))
        await asyncio.sleep(0.5)
        # A transaction that reads first and then writes fails at once ("database is locked"), not waiting.
        assert not migrating.done()
        other.execute("COMMIT")
        await asyncio.wait_for(migrating, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    finally:
        other.close()
    db = Database(settings.resolved_database_url)
    try:
        assert await current_revision(db) == head_revision()
    finally:
        await db.dispose()


async def test_replicas_initialising_at_once_create_one_first_tenant_with_one_owner_key(
    app: FastAPI, db: Database, settings: Settings
) -> None:
    replicas = _replicas(settings)
    try:
        created = await asyncio.gather(*(tenant_service.ensure_first_tenant(db=replica) for replica in replicas))
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))
    assert len([first for first in created if first is not None]) == 1
    tenants = await tenant_service.list_all(db=db)
    assert [tenant.name for tenant in tenants] == ["default"]
    keys = await identity_service.list_keys(db=db, scope=tenants[0].scope, include_revoked=True, limit=10, after=None)
    assert len(keys.items) == 1


async def test_a_first_start_that_fails_before_its_key_is_stored_leaves_nothing_so_the_next_prints_one(
    app: FastAPI, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant committed without its key would make later starts say the key was lost, though none was printed."""

    async def fails(**_: object) -> str:
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(identity_service, "add_first_owner_key", fails)
        with pytest.raises(OSError, match="disk full"):
            await tenant_service.ensure_first_tenant(db=db)
    assert await tenant_service.list_all(db=db) == []
    created = await tenant_service.ensure_first_tenant(db=db)
    assert created is not None
    tenant, key = created
    keys = await identity_service.list_keys(db=db, scope=tenant.scope, include_revoked=True, limit=10, after=None)
    assert [(k.id.hex, k.role) for k in keys.items] == [(key.split("_")[1], "owner")]


async def test_replicas_registering_a_new_model_version_at_once_share_one_row(
    app: FastAPI, db: Database, settings: Settings, acme: TenantCredentials
) -> None:
    scope = acme.tenant.scope
    async with db.tenant_session(scope, write=True) as session:  # as if a new version had just shipped
        await session.execute(delete(Model).where(Model.tenant_id == acme.tenant.id))
    replicas = _replicas(settings)
    try:
        registered = await asyncio.gather(*(register_builtin_models(db=replica, scope=scope) for replica in replicas))
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))
    assert len({model.id for model in registered}) == 1
    async with db.tenant_session(scope) as session:
        assert await session.scalar(select(func.count()).select_from(Model)) == 1


class _OtherRelease(ModelRuntime):
    """A runtime whose shipped default has other parameters, as a newer release's would."""

    def builtin_default(self) -> Predictor:
        shipped = copy.copy(super().builtin_default())
        shipped.model_hash_ = "f" * 64
        return shipped


async def test_two_releases_registering_their_defaults_at_once_leave_one_default(
    app: FastAPI, db: Database, settings: Settings, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both clear the old default and then add theirs; unless they take turns, neither sees the other's row."""
    scope = acme.tenant.scope
    async with db.tenant_session(scope, write=True) as session:  # as if both releases were new here
        await session.execute(delete(Model).where(Model.tenant_id == acme.tenant.id))
    both_cleared = asyncio.Barrier(2)
    clear_default = model_repository.clear_default

    async def clear_then_meet(*, session: AsyncSession, scope: TenantScope) -> None:
        await clear_default(session=session, scope=scope)
        with contextlib.suppress(TimeoutError):  # taking turns, the second cannot arrive while the first waits
            await asyncio.wait_for(both_cleared.wait(), timeout=1)

    monkeypatch.setattr(model_repository, "clear_default", clear_then_meet)
    replicas = _replicas(settings)[:2]
    try:
        await asyncio.gather(
            register_builtin_models(db=replicas[0], scope=scope, runtime=ModelRuntime()),
            register_builtin_models(db=replicas[1], scope=scope, runtime=_OtherRelease()),
        )
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))
    async with db.tenant_session(scope) as session:
        defaults = (await session.scalars(select(Model).where(Model.is_default.is_(True)))).all()
    assert len(defaults) == 1
