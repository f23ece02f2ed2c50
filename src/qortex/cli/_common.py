"""What every command shares: settings, a database handle, and errors printed as one line."""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from qortex.core.config import Settings, get_settings
from qortex.core.database import Database
from qortex.core.errors import QortexError, StorageUnavailable
from qortex.core.migrate import current_revision, schema_problem
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


# PostgreSQL SQLSTATEs whose fix is a command or a setting that the driver's message does not name.
_DATABASE_HINTS = {
    "42P01": "the database is not migrated: run `qortex migrate`",
    "3F000": "check that the schema named by QORTEX_DATABASE_SCHEMA exists",
}


def fail(message: str, code: int = 1) -> typer.Exit:
    # escape: a message quoting input or a driver ("[SQL: ...]", "[default: ...]") is not Rich markup.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns expected failures into one clear line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except StorageUnavailable as error:
            # The driver's own words (locked, unable to open, timed out) say more here than an HTTP-minded 503.
            cause = error.__cause__
            message = _database_failure(cause) if isinstance(cause, SQLAlchemyError) else f"database: {_reason(cause)}"
            raise fail(message) from None
        except QortexError as error:
            raise fail(error.detail) from None
        except ValidationError as error:
            raise fail(_one_line(error)) from None
        except (OSError, ValueError, EngineError) as error:
            raise fail(str(error)) from None
        except SQLAlchemyError as error:
            raise fail(_database_failure(error)) from None

    return wrapper


def _reason(error: BaseException | None) -> str:
    """An error's own words; a timeout has none (str(TimeoutError()) is empty)."""
    message = str(error).strip()
    if message:
        return message
    return "timed out" if isinstance(error, TimeoutError) else type(error).__name__


def _database_failure(error: SQLAlchemyError) -> str:
    """The driver's own message, first line only: SQLAlchemy's adds the SQL statement and its parameters."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    message = (str(cause).strip() or type(cause).__name__).splitlines()[0]
    hint = _DATABASE_HINTS.get(getattr(cause, "sqlstate", None) or "")
    if hint is None and message.startswith("no such table"):
        hint = _DATABASE_HINTS["42P01"]
    return f"database: {message}" + (f"; {hint}" if hint else "")


@contextmanager
def _engine_from(setting: str) -> Iterator[None]:
    """Creating an engine loads the dialect and driver that a URL names: a failure there is the setting's."""
    try:
        yield
    except ArgumentError as error:
        raise QortexError(f"{setting}: {error}") from None
    except ImportError as error:
        raise QortexError(f"{setting}: its database driver is not installed ({error})") from None


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


def print_table(table: Table, console: Console = console) -> None:
    """Prints a table at its natural width, wider than the terminal if need be.

    Piped, logged or in a narrow terminal, Rich would elide cells to fit: ids that other commands take,
    dates, the numbers of an evaluation.
    """
    natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
    lines = console.render_lines(table, console.options.update(width=natural), new_lines=True)
    console.print(Segments(itertools.chain.from_iterable(lines)), crop=False)


@asynccontextmanager
async def open_database(settings: Settings | None = None, *, migrate: bool | None = None) -> AsyncIterator[Database]:
    """The configured database, migrated first if `migrate` says so (by default, if QORTEX_AUTO_MIGRATE does);
    unmigrated, it must be at the revision this release needs."""
    settings = settings or get_settings()
    # Every command, not only `serve`: an operator must not migrate or fill a throwaway embedded file.
    problems = settings.database_problems()
    if problems:
        raise QortexError("; ".join(problems))
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's own words, "File exists", read as if that were fine
        raise QortexError(f"QORTEX_DATA_DIR: {settings.data_dir} exists and is not a directory") from None
    except OSError as error:
        raise QortexError(f"QORTEX_DATA_DIR: cannot create {settings.data_dir}: {error.strerror}") from None
    migrating = settings.auto_migrate if migrate is None else migrate
    if migrating:
        with _engine_from(
            "QORTEX_MIGRATION_DATABASE_URL" if settings.migration_database_url else "QORTEX_DATABASE_URL"
        ):
            try:
                await migrate_database(settings)
            except OSError as error:
                # The driver could not connect (refused, timed out, no such file): not wrapped by SQLAlchemy, and
                # the database's failure as much as when a command's own transaction cannot connect.
                raise StorageUnavailable() from error
    with _engine_from("QORTEX_DATABASE_URL"):
        db = Database(settings.resolved_database_url, schema=settings.database_schema)
    try:
        if not migrating:
            # Without migrating, the operator does: a schema of another release is one line, neither written
            # into (a newer one) nor a crash on a missing column (an older one).
            problem = schema_problem(await current_revision(db))
            if problem is not None:
                raise QortexError(problem)
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
