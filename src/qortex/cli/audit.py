"""`qortex audit verify`: recompute tenants' audit chains on the server's host."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from qortex.audit import service as audit_service
from qortex.audit.service import ChainVerdict
from qortex.cli._common import fail, one_line_errors, open_database, print_table, resolve_tenant, run
from qortex.tenants import service as tenant_service

app = typer.Typer(no_args_is_help=True, help="Check tenants' audit chains.")


@app.command("verify")
@one_line_errors
def verify(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: every tenant)")] = None,
) -> None:
    """Recomputes each chain: any edited, deleted, inserted or reordered event breaks it (exit status 1)."""

    async def _verify() -> list[tuple[str, ChainVerdict]]:
        async with open_database() as db:
            tenants = [await resolve_tenant(db, tenant)] if tenant is not None else await tenant_service.list_all(db=db)
            return [(t.name, await audit_service.verify(db=db, scope=t.scope)) for t in tenants]

    verdicts = run(_verify())
    table = Table("tenant", "chain", "events checked", "first broken event", "reason")
    for name, verdict in verdicts:
        state = "intact" if verdict.intact else "BROKEN"
        broken = "" if verdict.first_broken_seq is None else str(verdict.first_broken_seq)
        table.add_row(name, state, str(verdict.events_checked), broken, verdict.reason)
    print_table(table)
    broken_names = [name for name, verdict in verdicts if not verdict.intact]
    if broken_names:
        raise fail(f"the audit chain of {', '.join(broken_names)} is broken")
