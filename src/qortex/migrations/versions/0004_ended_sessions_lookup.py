"""The ended-sessions lookup shows ended sessions only

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 11:31:00

Revocation polling reads ended sessions across tenants; the policy let that transaction see every
session, live ones included.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY lookup_ended_sessions ON auth_sessions")
    op.execute(
        "CREATE POLICY lookup_ended_sessions ON auth_sessions FOR SELECT "
        "USING (qortex_lookup('ended_sessions') = 'on' AND ended_at IS NOT NULL)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY lookup_ended_sessions ON auth_sessions")
    op.execute(
        "CREATE POLICY lookup_ended_sessions ON auth_sessions FOR SELECT USING (qortex_lookup('ended_sessions') = 'on')"
    )
