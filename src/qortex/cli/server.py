"""`qortex serve`, `qortex migrate`, `qortex init`."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer
import uvicorn

from qortex.api import startup_problems
from qortex.cli._common import console, fail, one_line_errors, open_database, run
from qortex.core.config import get_settings
from qortex.core.migrate import current_revision
from qortex.tenants import service as tenant_service


async def _initialise() -> None:
    async with open_database() as db:
        created = await tenant_service.ensure_first_tenant(db=db)
        if created is None:
            # The key printed once was the first tenant's; with several tenants, `keys create` needs its name.
            first = (await tenant_service.list_all(db=db))[0]
            hint = f"qortex keys create --tenant {first.name} --name NAME --role owner"
            # soft_wrap: piped into a log, the command must not be broken across lines.
            console.print(
                f"Qortex is initialised. Lost the key? Create another with: {hint}", highlight=False, soft_wrap=True
            )
            return
    tenant, key = created
    console.print(f"Created tenant [bold]{tenant.name}[/] and its owner API key (shown only this once):")
    console.print(f"\n    {key}\n", highlight=False, soft_wrap=True)
    console.print("Store it now: only its hash is kept.")


async def _check_schema() -> None:
    """Without auto-migration the operator migrates: opening the database refuses a schema this release cannot use."""
    async with open_database(migrate=False):
        pass


def _check_free(host: str, port: int) -> None:
    """Refuses an address another process listens on, in one line, before anything is created or printed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no owner
            probe.bind(address)
    except OSError as error:
        if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
            # A name that does not resolve, an address of another machine: no process to stop, no port to change.
            hint = "set QORTEX_HOST (or --host) to an address of this machine"
        elif error.errno == errno.EADDRINUSE:
            hint = "stop what holds it or set QORTEX_PORT"
        else:
            hint = "set QORTEX_HOST or QORTEX_PORT"
        raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}; {hint}") from None


@one_line_errors
def init() -> None:
    """Creates the data directory and database, then the first tenant and an owner key (printed once)."""
    run(_initialise())


@one_line_errors
def migrate() -> None:
    """Applies database migrations (production runs this before `serve`)."""

    async def _migrate() -> str | None:
        async with open_database(migrate=True) as db:
            return await current_revision(db)

    console.print(f"Database schema at revision {run(_migrate())}.")


@one_line_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (QORTEX_HOST)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (QORTEX_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (QORTEX_WORKERS)")] = None,
) -> None:
    """Serves the API. In embedded mode it migrates and initialises the database first."""
    settings = get_settings()
    # Before _initialise: a configuration that cannot start must not create a tenant and print a key first.
    problems = startup_problems(settings)
    if problems:
        raise fail("; ".join(problems))
    host, port = host or settings.host, settings.port if port is None else port
    if not settings.auto_migrate:
        run(_check_schema())
    _check_free(host, port)  # before _initialise too: the key it prints would go with a server that never started
    if settings.auto_migrate:
        run(_initialise())
    uvicorn.run(
        "qortex.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers if workers is None else workers,
        log_level=settings.log_level,
        # Without a bound, one client that never finishes its request keeps a stopping server alive.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        proxy_headers=False,
        server_header=False,
    )
