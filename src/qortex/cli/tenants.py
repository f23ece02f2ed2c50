"""`qortex tenants create|list|suspend|resume|limits|reset-request-policy`: operator commands, run on the server's
host."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from qortex.cli._common import console, fail, one_line_errors, open_database, print_table, resolve_tenant, run
from qortex.core.errors import NotFound
from qortex.limits import service as limits_service
from qortex.limits.plans import LIMIT_NAMES, PLANS
from qortex.limits.service import TenantLimits
from qortex.tenants import service as tenant_service

app = typer.Typer(
    no_args_is_help=True, help="Create, list, suspend and resume tenants; show and change their limits; lift a lockout."
)


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

    # soft_wrap: piped into a log, the command must not be broken across lines.
    console.print(
        f"Created tenant {name} ({run(_create())}). Give it a key: qortex keys create --tenant {name}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
@one_line_errors
def list_tenants() -> None:
    """Lists tenants."""

    async def _list() -> list[tuple[str, str, str, str, str]]:
        async with open_database() as db:
            return [
                (
                    t.name,
                    str(t.id),
                    t.plan,
                    "active" if t.active else "suspended",
                    t.created_at.isoformat(timespec="seconds"),
                )
                for t in await tenant_service.list_all(db=db)
            ]

    table = Table("name", "id", "plan", "state", "created")
    for row in run(_list()):
        table.add_row(*row)
    print_table(table)


def _set_active(name: str, active: bool) -> bool:
    async def _set() -> bool:
        async with open_database() as db:
            tenant = await resolve_tenant(db, name)
            return await tenant_service.set_active(db=db, scope=tenant.scope, active=active)

    return run(_set())


@app.command("suspend")
@one_line_errors
def suspend(name: Annotated[str, typer.Argument(help="The tenant's name")]) -> None:
    """Refuses every key and session of the tenant (running servers within seconds); its data stays."""
    changed = _set_active(name, active=False)
    console.print(f"Suspended tenant {name}." if changed else f"Tenant {name} was already suspended.")


@app.command("resume")
@one_line_errors
def resume(name: Annotated[str, typer.Argument(help="The tenant's name")]) -> None:
    """Lets a suspended tenant's keys and sessions in again."""
    changed = _set_active(name, active=True)
    console.print(f"Resumed tenant {name}." if changed else f"Tenant {name} was not suspended.")


@app.command("reset-request-policy")
@one_line_errors
def reset_request_policy(name: Annotated[str, typer.Argument(help="The tenant's name")]) -> None:
    """Empties the tenant's IP allow-list and stops requiring signed requests (its signing secret stays): the way
    back for a tenant locked out of the API. Audited; running servers apply it within
    QORTEX_TENANT_POLICY_CACHE_SECONDS."""

    async def _reset() -> tuple[list[str], bool]:
        async with open_database() as db:
            tenant = await resolve_tenant(db, name)
            before = (list(tenant.ip_allowlist or []), tenant.require_signed_requests)
            await tenant_service.reset_request_policy(db=db, scope=tenant.scope)
            return before

    allowlist, required = run(_reset())
    if not allowlist and not required:
        console.print(f"Tenant {name} has no allow-list and does not require signed requests: nothing to lift.")
        return
    console.print(
        f"Tenant {name}: allow-list emptied (it was {', '.join(allowlist) or 'empty'}); signed requests"
        f" {'no longer required' if required else 'were not required'}.",
        highlight=False,
        soft_wrap=True,
    )


@app.command("limits")
@one_line_errors
def limits(
    name: Annotated[str, typer.Argument(help="The tenant's name")],
    plan: Annotated[str | None, typer.Option(help=f"Move the tenant to this plan: {', '.join(PLANS)}")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one limit, NAME=VALUE (repeatable)")] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Drop one override, NAME (repeatable)")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Drop every override")] = False,
) -> None:
    """Shows a tenant's limits; with options, changes its plan or overrides (audited; running servers apply
    the change within QORTEX_LIMITS_CACHE_SECONDS)."""
    changes = _parse_assignments(set_ or [])
    dropped = set(unset or [])
    unknown = sorted(dropped - set(LIMIT_NAMES))
    if unknown:
        raise fail(f"unknown limit {unknown[0]!r}; known: {', '.join(LIMIT_NAMES)}")
    both = sorted(dropped & set(changes))
    if both:
        raise fail(f"limit {both[0]!r} is both set and unset; give one of --set and --unset for it")

    async def _apply() -> TenantLimits:
        async with open_database() as db:
            tenant = await tenant_service.get_by_name(db=db, name=name)
            if tenant is None:
                raise NotFound(f"no tenant named {name!r}")
            if plan is not None or changes or dropped or reset:
                # Applied to the stored overrides under the tenant's row lock: a change made meanwhile is kept.
                await limits_service.set_tenant_limits(
                    db=db,
                    scope=tenant.scope,
                    plan=plan,
                    overrides={} if reset else None,
                    changes=changes,
                    unset=dropped,
                )
            return await limits_service.tenant_limits(db=db, scope=tenant.scope)

    shown = run(_apply())
    table = Table("limit", "value", "from", title=f"{name}: plan {shown.plan}")
    for limit in LIMIT_NAMES:
        source = "override" if limit in shown.overrides else "plan"
        table.add_row(limit, f"{getattr(shown.effective, limit):,}", source)
    print_table(table)


# More digits than any limit needs (MAX_LIMIT_VALUE has 16); beyond Python's own bound on converting
# text to an integer (4,300 digits), int() would fail with a message that names neither the limit nor its range.
_MAX_DIGITS = 32


def _parse_assignments(assignments: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs; a value that is not a whole number is kept as text, for validation to name."""
    parsed: dict[str, object] = {}
    for assignment in assignments:
        limit, sep, value = assignment.partition("=")
        name = limit.strip()
        if not sep or not name:
            raise fail(f"--set takes NAME=VALUE, not {assignment!r}")
        if name in parsed:
            # Keeping either value would drop the other silently, often a typo for another limit's name.
            raise fail(f"limit {name!r} is set twice; give one --set for it")
        text = value.strip().replace("_", "")
        number = text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS
        parsed[name] = int(text) if number else value
    return parsed
