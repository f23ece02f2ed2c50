"""What every command shares: settings, a database handle, and errors printed as one line."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import ArgumentError

from qortex.core.config import Settings, get_settings
from qortex.core.database import Database
from qortex.core.errors import QortexError
from qortex.core.migrate import migrate as migrate_database
from qortex.core.pagination import HasId, Page
from qortex.engine import EngineError
from qortex.tenants import service as tenant_service
from qortex.tenants.models import Tenant

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", bound=HasId)

console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns expected failures into one clear line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except QortexError as error:
            raise fail(error.detail) from None
        except ValidationError as error:
            raise fail(_one_line(error)) from None
        except (OSError, ValueError, EngineError, ArgumentError) as error:
            raise fail(str(error)) from None

    return wrapper


def _one_line(error: ValidationError) -> str:
    """Settings name their environment variable; other models their field path."""
    settings = error.title == Settings.__name__
    fields = [
        (f"QORTEX_{'_'.join(map(str, e['loc'])).upper()}" if settings else ".".join(map(str, e["loc"])))
        + f": {e['msg']}"
        for e in error.errors()
    ]
    return f"invalid {'settings' if settings else error.title}: " + "; ".join(fields)


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coroutine)


@asynccontextmanager
async def open_database(settings: Settings | None = None, *, migrate: bool = True) -> AsyncIterator[Database]:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate and settings.auto_migrate:
        await migrate_database(settings)
    db = Database(settings.resolved_database_url, schema=settings.database_schema)
    try:
        yield db
    finally:
        await db.dispose()


async def resolve_tenant(db: Database, name: str | None) -> Tenant:
    """The named tenant, or the only one when there is exactly one."""
    if name is not None:
        tenant = await tenant_service.get_by_name(db=db, name=name)
        if tenant is None:
            raise QortexError(f"no tenant named {name!r} (see `qortex tenants list`)")
        return tenant
    tenants = await tenant_service.list_all(db=db)
    if len(tenants) == 1:
        return tenants[0]
    if not tenants:
        raise QortexError("no tenant exists yet; run `qortex init` or `qortex tenants create NAME`")
    raise QortexError("several tenants exist; name one with --tenant")


async def every_item(fetch: Callable[[uuid.UUID | None], Awaitable[Page[T]]]) -> list[T]:
    """Walks every page of a listing (`fetch(after)` answers the page after an id), for commands that print it all."""
    items: list[T] = []
    after = None
    while True:
        page = await fetch(after)
        items += page.items
        if page.next_cursor is None:
            return items
        after = page.items[-1].id
