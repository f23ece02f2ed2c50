"""`qortex users`: create (password from stdin), list, set-role, deactivate; errors as one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from qortex.cli import app, users
from qortex.core.config import get_settings


@pytest.fixture
def qortex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name in ("QORTEX_DATABASE_URL", "QORTEX_DATABASE_SCHEMA", "QORTEX_ENV", "QORTEX_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QORTEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QORTEX_PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("QORTEX_PASSWORD_MEMORY_KIB", "64")
    monkeypatch.setenv("QORTEX_PASSWORD_PARALLELISM", "1")
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def invoke(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin)


def create_user(runner: CliRunner, name: str, email: str, *options: str) -> None:
    created = invoke(
        runner,
        "users",
        "create",
        name,
        "--email",
        email,
        *options,
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert created.exit_code == 0, created.output + created.stderr


def test_create_list_set_role_and_deactivate(qortex: CliRunner) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    create_user(qortex, "Quinn", "Quinn@Example.com", "--role", "admin")
    listed = invoke(qortex, "users", "list")
    assert "quinn" in listed.stdout and "quinn@example.com" in listed.stdout and "admin" in listed.stdout
    assert "argon2" not in listed.stdout

    assert invoke(qortex, "users", "set-role", "quinn", "viewer").exit_code == 0
    assert "viewer" in invoke(qortex, "users", "list").stdout
    assert invoke(qortex, "users", "deactivate", "quinn").exit_code == 0
    assert "quinn" not in invoke(qortex, "users", "list").stdout
    assert "deactivated" in invoke(qortex, "users", "list", "--include-inactive").stdout


def test_a_change_that_changes_nothing_says_so_instead_of_ending_sessions(qortex: CliRunner) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    create_user(qortex, "quinn", "q@example.com")
    changed = invoke(qortex, "users", "set-role", "quinn", "viewer")
    assert changed.stdout.strip() == "quinn is now viewer; their sessions have ended."
    again = invoke(qortex, "users", "set-role", "quinn", "viewer")
    assert again.exit_code == 0 and again.stdout.strip() == "quinn already is viewer; nothing changed."
    assert (
        invoke(qortex, "users", "deactivate", "quinn").stdout.strip() == "Deactivated quinn; their sessions have ended."
    )
    repeated = invoke(qortex, "users", "deactivate", "quinn")
    assert repeated.exit_code == 0 and repeated.stdout.strip() == "quinn was already deactivated."


def test_a_prompted_password_is_hidden_and_confirmed(qortex: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    monkeypatch.setattr(users, "_has_terminal", lambda: True)  # the runner answers the prompt as a terminal would
    result = invoke(
        qortex, "users", "create", "rita", "--email", "rita@example.com", stdin="prompted password\nprompted password\n"
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert "prompted password" not in result.output


def test_errors_are_one_line_and_never_echo_the_password(qortex: CliRunner) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    short = invoke(qortex, "users", "create", "sam", "--email", "sam@example.com", "--password-stdin", stdin="tiny1\n")
    assert short.exit_code == 1 and short.stderr.strip().count("\n") == 0
    assert "at least 12" in short.stderr and "tiny1" not in short.stderr + short.stdout
    missing = invoke(qortex, "users", "set-role", "nobody", "viewer")
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0


def test_a_password_on_stdin_that_is_not_utf8_is_named_as_such(qortex: CliRunner) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    args = ("users", "create", "sam", "--email", "sam@example.com", "--password-stdin")
    result = qortex.invoke(app, list(args), input="mot de passe érudit\n".encode("latin-1"))
    assert result.exit_code == 1
    assert result.stderr == "error: the password on standard input is not UTF-8 text\n"


def test_a_prompt_with_no_terminal_is_one_line_pointing_to_password_stdin(qortex: CliRunner) -> None:
    assert invoke(qortex, "tenants", "create", "acme").exit_code == 0
    # A real process with no controlling terminal (CliRunner fakes the prompt): getpass cannot hide input.
    result = subprocess.run(
        [sys.executable, "-c", "from qortex.cli import app; app()", "users", "create", "carol", "--email", "c@x.com"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no terminal to type the password at; pipe it in with --password-stdin"
    assert result.stdout == ""  # no prompt printed ahead of the error
