"""API keys record the person whose session minted them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 13:50:00

A key minted from a person's session (directly, or by a key minted so) acts for that person: it may
not reset that person's password or change their role, as the session itself may not. A plain
column, not a foreign key, so erasing a person later does not have to rewrite the keys they minted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minted_for_user_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("minted_for_user_id")
