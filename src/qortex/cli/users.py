"""`qortex users create|list|set-role|deactivate`: the people of one tenant, as its operator."""

from __future__ import annotations

import getpass
import os
import sys
import warnings
from datetime import timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from qortex.cli._common import (
    console,
    every_item,
    fail,
    one_line_errors,
    open_database,
    print_table,
    resolve_tenant,
    run,
)
from qortex.core.config import get_settings
from qortex.core.database import Database
from qortex.identity import users as user_service
from qortex.identity.models import User
from qortex.identity.schemas import UserCreate
from qortex.security.passwords import Passwords
from qortex.security.rbac import Role
from qortex.security.revocation import SessionRevocations

app = typer.Typer(no_args_is_help=True, help="Create, list, change and deactivate the people of a tenant.")

TenantOption = Annotated[str | None, typer.Option(help="Tenant name; optional when there is only one")]


_NO_TERMINAL = "no terminal to type the password at; pipe it in with --password-stdin"


def _has_terminal() -> bool:
    """Whether getpass can hide what is typed: it reads the controlling terminal, else standard input if a terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return sys.stdin.isatty()
    return True


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        try:
            # One line; a trailing newline from `echo` or a file is not part of the password.
            line = sys.stdin.readline().rstrip("\r\n")
            line.encode()  # where the locale decodes leniently, bytes that are not UTF-8 arrive as surrogates
        except UnicodeError:  # else the codec's words, naming neither the password nor standard input
            raise fail("the password on standard input is not UTF-8 text") from None
        return line
    # Before prompting: the prompt goes to stdout, ahead of the error.
    if not _has_terminal():
        raise fail(_NO_TERMINAL)
    try:
        # Should getpass still fail to hide the input, it warns and would read the password echoed.
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    except getpass.GetPassWarning:
        raise fail(_NO_TERMINAL) from None
    return password


def _revocations(db: Database) -> SessionRevocations | None:
    """Announces ended sessions over Redis when configured; without it, servers find them by polling."""
    settings = get_settings()
    if not settings.redis_url:
        return None
    return SessionRevocations(
        db=db,
        token_lifetime=timedelta(minutes=settings.access_token_minutes),
        poll_seconds=settings.session_poll_seconds,
        redis_url=settings.redis_url,
    )


@app.command("create")
@one_line_errors
def create(
    username: Annotated[str, typer.Argument(help="Login name: 3 to 64 of a-z 0-9 . _ -, the first a letter or digit")],
    email: Annotated[str, typer.Option(help="Email address (unique across tenants)")],
    display_name: Annotated[str | None, typer.Option(help="Name shown to people; the username if unset")] = None,
    role: Annotated[Role, typer.Option(help="Role the person acts with")] = Role.ANALYST,
    tenant: TenantOption = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input")] = False,
) -> None:
    """Creates a person; the password is prompted for (hidden) or read from standard input."""
    password = _read_password(password_stdin)
    # The same validation as the API: username shape, email syntax, password length.
    try:
        body = UserCreate.model_validate(
            {
                "username": username,
                "email": email,
                "display_name": display_name or username,
                "password": password,
                "role": role,
            }
        )
    except ValidationError as error:
        # Field names and reasons only: the input (a password, perhaps) is never echoed.
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(reasons) from None

    async def _create() -> str:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            answer = await user_service.create_user(
                db=db,
                passwords=Passwords.from_settings(get_settings()),
                scope=owner.scope,
                username=body.username,
                email=body.email,
                display_name=body.display_name,
                password=body.password.get_secret_value(),
                role=body.role,
            )
            return str(answer.body["id"])

    user_id = run(_create())
    console.print(f"Created {body.username} ({role.value}) with id {user_id}.", highlight=False)


@app.command("list")
@one_line_errors
def list_users(
    tenant: TenantOption = None,
    include_inactive: Annotated[bool, typer.Option(help="Show deactivated people too")] = False,
) -> None:
    """Lists a tenant's people (never their password hashes)."""

    async def _list() -> list[tuple[str, ...]]:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            people = await every_item(
                lambda after: user_service.list_users(
                    db=db, scope=owner.scope, include_inactive=include_inactive, limit=500, after=after
                )
            )
            return [(str(u.id), u.username, u.email, u.role, "active" if u.active else "deactivated") for u in people]

    table = Table("id", "username", "email", "role", "state")
    for row in run(_list()):
        table.add_row(*row)
    print_table(table)


def _change(username: str, tenant: str | None, changes: user_service.UserChanges) -> User:
    """Applies the changes; returns the person as they were before, so the answer can say whether anything changed."""

    async def _apply() -> User:
        async with open_database() as db:
            owner = await resolve_tenant(db, tenant)
            user = await user_service.find_by_username(db=db, scope=owner.scope, username=username)
            revocations = _revocations(db)
            try:
                await user_service.update_user(
                    db=db,
                    revocations=revocations,
                    passwords=Passwords.from_settings(get_settings()),
                    scope=owner.scope,
                    user_id=user.id,
                    changes=changes,
                )
            finally:
                if revocations is not None:
                    await revocations.stop()
            return user

    return run(_apply())


@app.command("set-role")
@one_line_errors
def set_role(
    username: Annotated[str, typer.Argument(help="The person's username")],
    role: Annotated[Role, typer.Argument(help="The new role")],
    tenant: TenantOption = None,
) -> None:
    """Changes a person's role; their sessions end, so the new role applies at their next login."""
    before = _change(username, tenant, user_service.UserChanges(role=role))
    if before.role == role.value:
        console.print(f"{username} already is {role.value}; nothing changed.", highlight=False)
        return
    console.print(f"{username} is now {role.value}; their sessions have ended.", highlight=False)


@app.command("deactivate")
@one_line_errors
def deactivate(
    username: Annotated[str, typer.Argument(help="The person's username")],
    tenant: TenantOption = None,
) -> None:
    """Deactivates a person: they can no longer log in, and their sessions end."""
    before = _change(username, tenant, user_service.UserChanges(active=False))
    if not before.active:
        console.print(f"{username} was already deactivated.", highlight=False)
        return
    console.print(f"Deactivated {username}; their sessions have ended.", highlight=False)
