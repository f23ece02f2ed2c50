"""Alembic environment: migrations always run on a connection handed in by qortex.core.migrate."""

from __future__ import annotations

from alembic import context

from qortex.core.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `qortex migrate`, which supplies the database connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
