"""Stored Idempotency-Key answers are looked up by age, to sweep those past their lifetime

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00

Answers are replayed for 24 hours; a background sweep then deletes them tenant by tenant, oldest
first, so the index is on (tenant_id, created_at).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_tenant_created", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_tenant_created")
