"""`qortex keys create|list|revoke`: API keys of one tenant."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from qortex.cli._common import console, every_item, one_line_errors, open_database, print_table, resolve_tenant, run
from qortex.core.clock import utcnow
from qortex.identity import service as identity_service
from qortex.identity.models import ApiKey
from qortex.identity.schemas import ApiKeyCreate
from qortex.security import api_keys
from qortex.security.rbac import Role

app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")

TenantOption = Annotated[str | None, typer.Option(help="Tenant name; optional when there is only one")]


@app.command("create")
@one_line_errors
def create(
    name: Annotated[str, typer.Option(help="What the key is for")] = "cli key",
    role: Annotated[Role, typer.Option(help="Role the key acts with")] = Role.OWNER,
    tenant: TenantOption = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=36_500, help="Expire after this many days (at most 100 years)")
    ] = None,
) -> None:
    """Creates a key and prints it once; only its hash is stored."""
    # The same validation as the API: 1 to 100 characters without control characters, surrounding spaces dropped.
    try:
        name = ApiKeyCreate.model_validate({"name": name, "role": role}).name
    except ValidationError as error:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())) from None

    async def _create() -> str:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
            answer = await identity_service.create_key(
                db=db, scope=owner.scope, name=name, role=role, expires_at=expires
            )
            return str(answer.body["key"])

    key = run(_create())
    console.print("New API key (shown only this once):")
    console.print(f"\n    {key}\n", highlight=False, soft_wrap=True)


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at:
        return "revoked"
    # Refused like a revoked key, yet listed without --include-revoked (as through the API): not "active".
    return "expired" if key.expires_at is not None and key.expires_at <= now else "active"


@app.command("list")
@one_line_errors
def list_keys(
    tenant: TenantOption = None,
    include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too")] = False,
) -> None:
    """Lists a tenant's keys (never their secrets)."""

    async def _list() -> list[tuple[str, ...]]:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            now = utcnow()
            keys = await every_item(
                lambda after: identity_service.list_keys(
                    db=db, scope=owner.scope, include_revoked=include_revoked, limit=500, after=after
                )
            )
            return [
                (
                    str(k.id),
                    k.name,
                    k.role,
                    k.created_at.isoformat(timespec="seconds"),
                    k.expires_at.isoformat(timespec="seconds") if k.expires_at else "-",
                    _state(k, now),
                )
                for k in keys
            ]

    table = Table("id", "name", "role", "created", "expires", "state")
    for row in run(_list()):
        # Plain text, not Rich markup: a tenant's admin names keys through the API, so "[/]" must not crash the
        # listing, nor "[link=...]" restyle it.
        table.add_row(*map(Text, row))
    print_table(table)


@app.command("revoke")
@one_line_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `qortex keys list`)")],
    tenant: TenantOption = None,
) -> None:
    """Revokes a key; every server refuses it within 5 seconds."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise ValueError(_not_a_key_id(key_id)) from None

    async def _revoke() -> bool:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            return await identity_service.revoke_key(db=db, scope=owner.scope, key_id=parsed, cache=None)

    console.print(f"Revoked {parsed}." if run(_revoke()) else f"Key {parsed} was already revoked.")


def _not_a_key_id(argument: str) -> str:
    """Why an argument is not a key id. A whole key is not echoed: its secret would land in scrollback and logs."""
    # Also pasted with what surrounded it ("Bearer qx_...", a leading space): the secret is there all the same.
    start = argument.find(api_keys.PREFIX)
    if start < 0:
        return f"{argument!r} is not a key id"
    whole = api_keys.parse_key(argument[start:].strip())
    return "that is an API key, secret included, not a key id" + (f"; its id is {whole.key_id}" if whole else "")
