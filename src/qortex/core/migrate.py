"""Applies the Alembic migrations shipped inside the package."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from qortex.core.database import Database


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("qortex") / "migrations"))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(database: Database) -> None:
    def _upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "head")

    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def current_revision(database: Database) -> str | None:
    def _current(connection: Connection) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()

    async with database.engine.connect() as connection:
        return await connection.run_sync(_current)
