"""The migrated schema is the one the models declare: a model change without its migration fails here."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy.engine import Connection

from qortex.core.config import Settings
from qortex.core.database import Base, Database


async def test_the_migrated_schema_has_no_differences_from_the_models(app: FastAPI, settings: Settings) -> None:
    owner = Database(settings.resolved_migration_url, schema=settings.database_schema)

    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    try:
        async with owner.engine.connect() as connection:
            found = await connection.run_sync(differences)
    finally:
        await owner.dispose()
    assert found == []
