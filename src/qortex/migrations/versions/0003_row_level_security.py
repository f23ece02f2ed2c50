"""Row-level security on PostgreSQL: every tenant-owned row is visible only inside its tenant's transaction

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:05:00

The application sets `qortex.tenant_id` transaction-locally (set_config(..., true)); with it unset,
`qortex_current_tenant()` is NULL and no row matches, so a forgotten filter fails closed. The few
reads that precede knowing the tenant get SELECT-only policies keyed on an explicit lookup value
(`qortex.lookup_*`), so they can see exactly the row asked for and nothing else. SQLite (embedded,
single tenant-owner process) has no row-level security; there the tenant-scoped repositories are
the guard.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "api_keys",
    "models",
    "prediction_inputs",
    "predictions",
    "idempotency_records",
    "users",
    "auth_sessions",
    "refresh_tokens",
    "audit_events",
    "audit_chain_heads",
)

# Pre-tenant reads: (table, policy name, condition on a lookup setting).
LOOKUP_POLICIES = (
    ("api_keys", "lookup_api_key_by_id", "id = qortex_lookup('api_key')::uuid"),
    ("users", "lookup_user_by_login", "username = qortex_lookup('login') OR email = qortex_lookup('login')"),
    ("refresh_tokens", "lookup_refresh_token", "token_sha256 = qortex_lookup('refresh_token')"),
    ("auth_sessions", "lookup_ended_sessions", "qortex_lookup('ended_sessions') = 'on'"),
    ("tenants", "tenant_directory", "qortex_lookup('tenant_directory') = 'on'"),
)


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_postgresql():
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION qortex_current_tenant() RETURNS uuid
        LANGUAGE sql STABLE AS
        $$ SELECT NULLIF(current_setting('qortex.tenant_id', true), '')::uuid $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION qortex_lookup(name text) RETURNS text
        LANGUAGE sql STABLE AS
        $$ SELECT NULLIF(current_setting('qortex.lookup_' || name, true), '') $$
        """
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = qortex_current_tenant()) WITH CHECK (tenant_id = qortex_current_tenant())"
        )
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON tenants "
        "USING (id = qortex_current_tenant()) WITH CHECK (id = qortex_current_tenant())"
    )
    for table, name, condition in LOOKUP_POLICIES:
        op.execute(f"CREATE POLICY {name} ON {table} FOR SELECT USING ({condition})")


def downgrade() -> None:
    if not _is_postgresql():
        return
    for table, name, _ in LOOKUP_POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    for table in (*TENANT_TABLES, "tenants"):
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS qortex_lookup(text)")
    op.execute("DROP FUNCTION IF EXISTS qortex_current_tenant()")
