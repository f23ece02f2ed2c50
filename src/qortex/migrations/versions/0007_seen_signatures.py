"""Seen request signatures are kept in the database when there is no Redis

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:30:00

Without Redis, the signatures already accepted lived in each process's memory: another worker or
replica, or the same process after a restart, accepted a captured signed request again while its
timestamp was in the window. One row per accepted signature, refused by the primary key the second
time, swept once expired; tenant-owned, so under the same row-level security as the other tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_signatures",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("signature_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "signature_sha256"),
    )
    with op.batch_alter_table("seen_signatures", schema=None) as batch_op:
        batch_op.create_index("ix_seen_signatures_tenant_expires", ["tenant_id", "expires_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE seen_signatures ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE seen_signatures FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY tenant_isolation ON seen_signatures "
            "USING (tenant_id = qortex_current_tenant()) WITH CHECK (tenant_id = qortex_current_tenant())"
        )


def downgrade() -> None:
    with op.batch_alter_table("seen_signatures", schema=None) as batch_op:
        batch_op.drop_index("ix_seen_signatures_tenant_expires")
    op.drop_table("seen_signatures")
