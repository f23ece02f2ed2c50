"""Applies the Alembic migrations shipped inside the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection

from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.core.errors import QortexError

# pg_advisory_xact_lock key held while migrating: the bytes of "qortex" as an integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"qortex", "big")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("qortex") / "migrations"))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest migration this code ships: the schema revision it needs."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations are shipped")
    return head


def unknown_revision_problem(found: str) -> str | None:
    """Why a database at revision `found` cannot be used or migrated by this release, or None if it can."""
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(found)
    except (ResolutionError, CommandError):  # which one depends on how the id fails to resolve
        return (
            f"the database schema is at revision {found}, which this release does not know (it needs "
            f"{head_revision()}): a newer release migrated it; run that release, not this one"
        )
    return None


def schema_problem(found: str | None) -> str | None:
    """Why this release cannot use a database at revision `found` as it is, unmigrated, or None if it can."""
    if found is None:
        return "the database is not migrated: run `qortex migrate`"
    if found == head_revision():
        return None
    return unknown_revision_problem(found) or (
        f"the database schema is at revision {found}, this release needs {head_revision()}: run `qortex migrate`"
    )


async def upgrade_to_head(database: Database, *, app_role: str | None = None) -> None:
    """Migrates to the newest revision; on PostgreSQL, grants the app role what it needs and no more."""

    def _upgrade(connection: Connection) -> None:
        found = _revision_of(connection)
        problem = unknown_revision_problem(found) if found is not None else None
        if problem is not None:
            raise QortexError(problem)
        command.upgrade(alembic_config(connection), "head")

    # A write transaction from the start (BEGIN IMMEDIATE on SQLite): processes migrating at once queue on the
    # busy timeout and the later ones find the schema current, instead of failing to upgrade a read lock.
    async with database.engine.execution_options(qortex_write=True).begin() as connection:
        if app_role and not database.is_sqlite:
            migrator = (await connection.execute(text("SELECT current_user"))).scalar_one()
            if app_role == migrator:
                # The REVOKEs below would take from the migrating role its own rights on the schema version
                # and the audit log, and every later migration would be refused.
                raise QortexError(
                    f"QORTEX_DATABASE_APP_ROLE names {app_role}, the role that runs migrations: give the app a role"
                    " that owns no tables, or leave QORTEX_DATABASE_APP_ROLE unset"
                )
        if not database.is_sqlite:
            # Replicas starting together would otherwise migrate and grant at once, and concurrent
            # GRANTs fail ("tuple concurrently updated"). SQLite serialises writers by itself.
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await connection.run_sync(_upgrade)
        if app_role and not database.is_sqlite:
            role = connection.dialect.identifier_preparer.quote(app_role)
            schema_name = (await connection.execute(text("SELECT current_schema()"))).scalar_one()
            schema = connection.dialect.identifier_preparer.quote(schema_name)
            for statement in (
                f"GRANT USAGE ON SCHEMA {schema} TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                # The audit log is append-only for the application; its heads only move forward (deleting
                # one would fail every later append), and the schema version is the migrator's alone.
                f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.audit_events FROM {role}",
                f"REVOKE DELETE, TRUNCATE ON {schema}.audit_chain_heads FROM {role}",
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.alembic_version FROM {role}",
            ):
                await connection.execute(text(statement))


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(database: Database) -> str | None:
    # Through a transaction of the database's own, so an unreachable one is reported as unavailable storage.
    async with database.system_session() as session:
        connection = await session.connection()
        return await connection.run_sync(_revision_of)


async def migrate(settings: Settings) -> None:
    """Migrates through the owner's connection (the app's own role may not alter tables)."""
    owner = Database(settings.resolved_migration_url, schema=settings.database_schema, time_limits=False)
    try:
        await upgrade_to_head(owner, app_role=settings.database_app_role)
    finally:
        await owner.dispose()
