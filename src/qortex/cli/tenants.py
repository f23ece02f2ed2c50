"""`qortex tenants create|list`: operator commands, run on the server's host."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from qortex.cli._common import console, one_line_errors, open_database, run
from qortex.tenants import service as tenant_service

app = typer.Typer(no_args_is_help=True, help="Create and list tenants.")


@app.command("create")
@one_line_errors
def create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and hyphens")],
    plan: Annotated[str, typer.Option(help="Plan name")] = "standard",
) -> None:
    """Creates a tenant (with the default model registered)."""

    async def _create() -> str:
        async with open_database() as db:
            tenant = await tenant_service.create(db=db, name=name, plan=plan)
            return str(tenant.id)

    console.print(f"Created tenant {name} ({run(_create())}). Give it a key: qortex keys create --tenant {name}")


@app.command("list")
@one_line_errors
def list_tenants() -> None:
    """Lists tenants."""

    async def _list() -> list[tuple[str, str, str, str]]:
        async with open_database() as db:
            return [
                (t.name, str(t.id), t.plan, t.created_at.isoformat(timespec="seconds"))
                for t in await tenant_service.list_all(db=db)
            ]

    table = Table("name", "id", "plan", "created")
    for row in run(_list()):
        table.add_row(*row)
    console.print(table)
