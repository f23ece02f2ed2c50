"""The `qortex` command line, run in-process against an embedded SQLite data directory."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite.core
import numpy as np
import pytest
import structlog
import typer
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.conftest import POSTGRES_URL, _run_sql, require_service
from typer.testing import CliRunner, Result

from qortex.cli import app
from qortex.core.config import get_settings
from qortex.core.database import Database
from qortex.engine import ArtifactError
from qortex.limits import service as limits_service
from qortex.limits.plans import LIMIT_NAMES, PLANS, PlanLimits

KEY = re.compile(r"\bqx_([0-9a-f]{32})_[A-Za-z0-9_-]+")


@pytest.fixture
def qortex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A runner whose commands use a fresh data directory; settings are re-read for it."""
    for name in ("QORTEX_DATABASE_URL", "QORTEX_DATABASE_SCHEMA", "QORTEX_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QORTEX_DATA_DIR", str(tmp_path / "data"))
    # Wide enough that tables and error lines are never wrapped.
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(runner: CliRunner, *args: str) -> Result:
    result = invoke(runner, *args)
    assert result.exit_code == 0, f"qortex {' '.join(args)}: {result.output}{result.stderr}"
    return result


def invoke_narrow(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """Runs a command in a 40-column terminal, where a wrapped error would span several lines."""
    monkeypatch.setenv("COLUMNS", "40")
    return invoke(runner, *args)


def invoke_narrow_ok(runner: CliRunner, *args: str) -> Result:
    """Runs a command that must succeed in a 40-column terminal."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "40")
        return ok(runner, *args)


def assert_one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert expected in result.stderr


def series(n: int, seed: int, drift: float) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in 100 + np.cumsum(rng.normal(loc=drift, size=n))]


def test_init_prints_an_owner_key_once_and_a_second_init_does_not(qortex: CliRunner) -> None:
    first = ok(qortex, "init")
    assert len(KEY.findall(first.stdout)) == 1
    assert "shown only this once" in first.stdout

    second = invoke_narrow_ok(qortex, "init")
    assert KEY.search(second.stdout) is None
    # Whole on one line even in a narrow terminal or a log, so it can be copied.
    assert "Create another with: qortex keys create --tenant default --name NAME --role owner" in second.stdout


def test_the_lost_key_hint_names_the_first_tenant_so_it_works_with_several(qortex: CliRunner) -> None:
    ok(qortex, "init")
    ok(qortex, "tenants", "create", "globex")
    hint = re.search(r"Create another with: qortex (.*)$", ok(qortex, "init").stdout, flags=re.MULTILINE)
    assert hint is not None
    assert KEY.search(ok(qortex, *hint.group(1).replace("NAME", "replacement").split()).stdout) is not None


def test_a_shipped_model_that_fails_its_check_creates_no_tenant_without_its_model(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant created without its model could not predict, and `init` would then say there is a key to lose."""
    ok(qortex, "migrate")
    with monkeypatch.context() as patch:

        def tampered() -> None:
            raise ArtifactError("artifact default: content hash mismatch; the .npz or .json was modified")

        patch.setattr("qortex.engine.Predictor.load_default", tampered)
        assert_one_line_error(invoke(qortex, "init"), "content hash mismatch")
        assert_one_line_error(invoke(qortex, "tenants", "create", "acme"), "content hash mismatch")
    assert "acme" not in ok(qortex, "tenants", "list").stdout
    assert len(KEY.findall(ok(qortex, "init").stdout)) == 1
    ok(qortex, "tenants", "create", "acme")
    database = get_settings().data_dir / "qortex.db"
    with sqlite3.connect(database) as connection:
        defaults = connection.execute("SELECT count(DISTINCT tenant_id), count(*) FROM models WHERE is_default")
        assert defaults.fetchone() == (2, 2)


def test_migrate_on_a_fresh_data_dir_creates_the_database(qortex: CliRunner, tmp_path: Path) -> None:
    result = ok(qortex, "migrate")
    assert re.search(r"Database schema at revision \w+\.", result.stdout), result.stdout
    assert (tmp_path / "data" / "qortex.db").is_file()
    assert "at revision" in ok(qortex, "migrate").stdout


@pytest.mark.parametrize(
    "command", [["serve"], ["migrate"], ["init"], ["tenants", "list"], ["keys", "list"], ["users", "list"]]
)
def test_production_refuses_the_embedded_database_before_creating_it(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    monkeypatch.setenv("QORTEX_ENV", "production")
    get_settings.cache_clear()
    result = invoke(qortex, *command)
    assert_one_line_error(result, "QORTEX_DATABASE_URL must be set explicitly in production")
    assert KEY.search(result.output) is None
    assert not (tmp_path / "data" / "qortex.db").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("serve", "--port", "70000"), "Invalid value for '--port'"),
        (("serve", "--port", "0"), "Invalid value for '--port'"),
        (("serve", "--workers", "-3"), "Invalid value for '--workers'"),
        (("keys", "create", "--role", "superuser"), "Invalid value for '--role'"),
        (("keys", "create", "--expires-in-days", "0"), "Invalid value for '--expires-in-days'"),
        (("keys", "list", "--colour"), "No such option: --colour"),
        (("tenants", "frobnicate"), "No such command 'frobnicate'"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_status_two(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: str
) -> None:
    result = invoke_narrow(qortex, monkeypatch, *args)
    assert_one_line_error(result, expected)
    assert result.exit_code == 2
    assert "╭" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("QORTEX_JWT_SIGNING_KEYS", "k1:short", "the JWT signing key 'k1' is shorter than 32 bytes"),
        ("QORTEX_REDIS_URL", "bogus://x", "QORTEX_REDIS_URL: Redis URL must specify one of the following schemes"),
    ],
)
def test_serve_refuses_a_configuration_that_cannot_start_before_creating_anything(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    result = invoke_narrow(qortex, monkeypatch, "serve")
    assert_one_line_error(result, expected)
    assert KEY.search(result.output) is None
    assert not (tmp_path / "data" / "qortex.db").exists()


@pytest.mark.parametrize(
    ("damage", "expected", "not_said"),
    [
        # The operator set no such variable.
        (
            lambda key: key.write_text("k1:short\n"),
            "jwt-signing-key is not a JWT signing key",
            "QORTEX_JWT_SIGNING_KEYS",
        ),
        # Deleting it, the remedy for a damaged key, would end every session over a permissions problem.
        (lambda key: key.mkdir(), "cannot read the JWT signing key", "delete it"),
    ],
)
def test_serve_refuses_a_bad_generated_jwt_key_file_naming_the_file_before_creating_anything(
    qortex: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    damage: Callable[[Path], object],
    expected: str,
    not_said: str,
) -> None:
    monkeypatch.delenv("QORTEX_JWT_SIGNING_KEYS", raising=False)
    get_settings.cache_clear()
    key_file = tmp_path / "data" / "jwt-signing-key"
    key_file.parent.mkdir()
    damage(key_file)
    result = invoke_narrow(qortex, monkeypatch, "serve")
    assert_one_line_error(result, expected)
    assert not_said not in result.stderr
    assert KEY.search(result.output) is None
    assert not (tmp_path / "data" / "qortex.db").exists()


def test_serve_on_a_port_another_process_listens_on_refuses_before_creating_anything(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = invoke_narrow(qortex, monkeypatch, "serve", "--port", str(port))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert KEY.search(result.output) is None
    assert not (tmp_path / "data" / "qortex.db").exists()


def test_serve_without_auto_migration_refuses_an_unmigrated_database_in_one_line(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QORTEX_AUTO_MIGRATE", "false")
    get_settings.cache_clear()
    assert_one_line_error(
        invoke_narrow(qortex, monkeypatch, "serve"), "the database is not migrated: run `qortex migrate`"
    )
    ok(qortex, "migrate")
    with sqlite3.connect(get_settings().data_dir / "qortex.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    result = invoke_narrow(qortex, monkeypatch, "serve")
    assert_one_line_error(result, "the database schema is at revision 0001, this release needs")
    # After a rollback the schema is newer than the release: migrating cannot help, and neither says so.
    with sqlite3.connect(get_settings().data_dir / "qortex.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    for command in ("serve", "migrate"):
        result = invoke_narrow(qortex, monkeypatch, command)
        assert_one_line_error(result, "at revision 9999_future, which this release does not know")


@pytest.mark.parametrize(
    "command",
    [
        ["tenants", "create", "globex"],
        ["tenants", "list"],
        ["tenants", "limits", "acme", "--set", "max_batch_items=7"],
        ["keys", "create"],
        ["users", "list"],
        ["audit", "verify"],
    ],
)
def test_without_auto_migration_every_command_refuses_a_schema_of_another_release(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    ok(qortex, "tenants", "create", "acme")
    monkeypatch.setenv("QORTEX_AUTO_MIGRATE", "false")
    get_settings.cache_clear()
    database = get_settings().data_dir / "qortex.db"
    for revision, expected in (
        ("9999_future", "at revision 9999_future, which this release does not know"),
        ("0001", "the database schema is at revision 0001, this release needs"),
    ):
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        assert_one_line_error(invoke_narrow(qortex, monkeypatch, *command), expected)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT name, limits FROM tenants").fetchall() == [("acme", "{}")]
        assert connection.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_tenants_are_created_and_listed(qortex: CliRunner) -> None:
    created = invoke_narrow_ok(qortex, "tenants", "create", "acme", "--plan", "enterprise")
    # Whole on one line even in a narrow terminal or a log, so the hint can be copied.
    assert re.search(
        r"^Created tenant acme \(.*\)\. Give it a key: qortex keys create --tenant acme$", created.stdout, re.M
    ), created.stdout
    ok(qortex, "tenants", "create", "globex")

    listed = invoke_narrow_ok(qortex, "tenants", "list").stdout
    assert re.search(
        r"acme\s.*\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b.*\benterprise\b", listed
    ), listed
    assert re.search(r"globex\s.*\bstandard\b", listed), listed


def limit_rows(output: str) -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\W*([a-z_]+)\W+([\d,]+)\W+(plan|override)\b", output, flags=re.MULTILINE)
    return {name: (value, source) for name, value, source in rows}


def test_a_tenants_limits_are_shown_overridden_and_reset(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme", "--plan", "free")
    shown = ok(qortex, "tenants", "limits", "acme").stdout
    assert "plan free" in shown
    assert limit_rows(shown)["requests_per_minute"] == (f"{PLANS['free'].requests_per_minute:,}", "plan")
    assert set(limit_rows(shown)) == set(LIMIT_NAMES)

    changed = ok(
        qortex, "tenants", "limits", "acme", "--set", "requests_per_minute=1_000", "--set", "max_batch_items=7"
    ).stdout
    assert limit_rows(changed)["requests_per_minute"] == ("1,000", "override")
    assert limit_rows(changed)["max_batch_items"] == ("7", "override")
    # Overrides outlive a change of plan; one can be dropped alone.
    moved = ok(qortex, "tenants", "limits", "acme", "--plan", "enterprise", "--unset", "max_batch_items").stdout
    assert "plan enterprise" in moved
    assert limit_rows(moved)["requests_per_minute"] == ("1,000", "override")
    assert limit_rows(moved)["max_batch_items"] == (f"{PLANS['enterprise'].max_batch_items:,}", "plan")
    reset = ok(qortex, "tenants", "limits", "acme", "--reset").stdout
    assert {source for _, source in limit_rows(reset).values()} == {"plan"}


def test_a_limit_both_set_and_unset_is_refused_and_nothing_changes(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme")
    result = invoke(qortex, "tenants", "limits", "acme", "--set", "max_batch_items=7", "--unset", "max_batch_items")
    assert result.exit_code == 1
    assert "limit 'max_batch_items' is both set and unset" in result.stderr
    assert limit_rows(ok(qortex, "tenants", "limits", "acme").stdout)["max_batch_items"][1] == "plan"


def test_a_limits_change_keeps_one_another_operator_made_meanwhile(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(qortex, "tenants", "create", "acme")
    ok(qortex, "tenants", "limits", "acme", "--set", "max_batch_items=7")
    write = limits_service.set_tenant_limits

    async def after_another_operator(**arguments: Any) -> PlanLimits:
        # Another `tenants limits acme --set requests_per_hour=5000` commits just before this command writes.
        other = {"max_batch_items": 7, "requests_per_hour": 5_000}
        await write(db=arguments["db"], scope=arguments["scope"], overrides=other)
        return await write(**arguments)

    monkeypatch.setattr(limits_service, "set_tenant_limits", after_another_operator)
    rows = limit_rows(ok(qortex, "tenants", "limits", "acme", "--set", "requests_per_minute=60").stdout)
    assert rows["requests_per_hour"] == ("5,000", "override")
    assert rows["requests_per_minute"] == ("60", "override")
    assert rows["max_batch_items"] == ("7", "override")


def test_keys_are_created_listed_and_revoked(qortex: CliRunner, tmp_path: Path) -> None:
    ok(qortex, "tenants", "create", "acme")
    created = ok(qortex, "keys", "create", "--tenant", "acme", "--name", "ci", "--role", "analyst")
    match = KEY.search(created.stdout)
    assert match is not None, created.stdout
    key_id = str(uuid.UUID(match.group(1)))

    # In a narrow terminal (as when piped), ids and dates are still whole: `keys revoke` takes the id.
    listed = invoke_narrow_ok(qortex, "keys", "list", "--tenant", "acme").stdout
    assert re.search(rf"{key_id}\s.*\bci\b.*\banalyst\b.*\d{{4}}-\d\d-\d\dT[\d:]+\+00:00.*\bactive\b", listed), listed
    assert match.group(0) not in listed

    assert f"Revoked {key_id}" in ok(qortex, "keys", "revoke", key_id, "--tenant", "acme").stdout
    assert f"Key {key_id} was already revoked." in ok(qortex, "keys", "revoke", key_id, "--tenant", "acme").stdout
    with sqlite3.connect(tmp_path / "data" / "qortex.db") as connection:
        query = "SELECT count(*) FROM audit_events WHERE action = 'api_key.revoke' AND target_id = ?"
        assert connection.execute(query, (key_id,)).fetchone() == (1,)
    assert key_id not in ok(qortex, "keys", "list", "--tenant", "acme").stdout
    everything = ok(qortex, "keys", "list", "--tenant", "acme", "--include-revoked").stdout
    assert re.search(rf"{key_id}\s.*\brevoked\b", everything), everything


def test_an_expired_key_is_listed_as_expired_not_active(qortex: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(qortex, "init")
    match = KEY.search(ok(qortex, "keys", "create", "--name", "day", "--expires-in-days", "1").stdout)
    assert match is not None
    key_id = str(uuid.UUID(match.group(1)))
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(sys.modules["qortex.cli.keys"], "utcnow", lambda: later)
    listed = ok(qortex, "keys", "list").stdout
    assert re.search(rf"{key_id}\s.*\bexpired\b", listed), listed


def test_the_only_tenant_needs_no_tenant_option(qortex: CliRunner) -> None:
    ok(qortex, "init")
    created = ok(qortex, "keys", "create", "--name", "second")
    assert KEY.search(created.stdout) is not None
    assert "second" in ok(qortex, "keys", "list").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("keys", "create", "--tenant", "nope"), "no tenant named 'nope'"),
        (("keys", "list", "--tenant", "nope"), "no tenant named 'nope'"),
        (("audit", "verify", "--tenant", ""), "no tenant named ''"),
        (("keys", "revoke", "not-a-uuid", "--tenant", "acme"), "'not-a-uuid' is not a key id"),
        (("keys", "revoke", str(uuid.UUID(int=7)), "--tenant", "acme"), "not found"),
        (("tenants", "create", "acme"), "tenant 'acme' already exists"),
        (("tenants", "create", "Bad Name!"), "tenant name must be"),
        # A trailing line break would make a tenant that no command can name.
        (("tenants", "create", "globex\n"), "tenant name must be"),
        (("tenants", "create", "globex", "--plan", "gold"), "unknown plan 'gold'"),
        (("tenants", "limits", "nope"), "no tenant named 'nope'"),
        (("tenants", "limits", "acme", "--plan", "gold"), "unknown plan 'gold'"),
        (("tenants", "limits", "acme", "--set", "requests_per_fortnight=5"), "requests_per_fortnight: unknown limit"),
        (("tenants", "limits", "acme", "--set", "requests_per_minute=0"), "requests_per_minute: must be an integer"),
        (("tenants", "limits", "acme", "--set", "requests_per_minute=fast"), "requests_per_minute: must be an integer"),
        (("tenants", "limits", "acme", "--set", "requests_per_minute"), "--set takes NAME=VALUE"),
        (("tenants", "limits", "acme", "--set", f"requests_per_minute={2**70}"), "must be an integer from 1 to"),
        (("tenants", "limits", "acme", "--set", f"requests_per_minute={10**15 + 1}"), "must be an integer from 1 to"),
        # More digits than Python converts: still the limit's own message, not the interpreter's.
        (("tenants", "limits", "acme", "--set", f"requests_per_minute={'9' * 5000}"), "requests_per_minute: must be"),
        (("tenants", "limits", "acme", "--unset", "colour"), "unknown limit 'colour'"),
        # Two values for one limit: keeping either would drop the other without a word (a typo for another name).
        (
            ("tenants", "limits", "acme", "--set", "requests_per_minute=5", "--set", "requests_per_minute=6"),
            "limit 'requests_per_minute' is set twice",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_a_failing_exit(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: str
) -> None:
    ok(qortex, "tenants", "create", "acme")
    assert_one_line_error(invoke_narrow(qortex, monkeypatch, *args), expected)


def test_revoking_by_a_whole_key_names_its_id_without_echoing_the_secret(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme")
    key = KEY.search(ok(qortex, "keys", "create", "--tenant", "acme").stdout)
    assert key is not None
    secret = key.group(0).split("_", 2)[2]
    whole = invoke(qortex, "keys", "revoke", key.group(0), "--tenant", "acme")
    assert_one_line_error(whole, f"not a key id; its id is {uuid.UUID(key.group(1))}")
    mangled = invoke(qortex, "keys", "revoke", f"qx_{key.group(1)[:-1]}_{secret}", "--tenant", "acme")
    assert_one_line_error(mangled, "that is an API key, secret included, not a key id")
    assert secret not in whole.stdout + whole.stderr + mangled.stdout + mangled.stderr
    assert "active" in ok(qortex, "keys", "list", "--tenant", "acme").stdout


@pytest.mark.parametrize("pasted", ["Bearer {key}", " {key}", "Authorization: Bearer {key}"])
def test_revoking_by_a_whole_key_pasted_with_text_around_it_does_not_echo_the_secret(
    qortex: CliRunner, pasted: str
) -> None:
    ok(qortex, "tenants", "create", "acme")
    key = KEY.search(ok(qortex, "keys", "create", "--tenant", "acme").stdout)
    assert key is not None
    refused = invoke(qortex, "keys", "revoke", pasted.format(key=key.group(0)), "--tenant", "acme")
    assert_one_line_error(refused, f"not a key id; its id is {uuid.UUID(key.group(1))}")
    assert key.group(0).split("_", 2)[2] not in refused.stdout + refused.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "name: Value should have at least 1 item"),
        ("   ", "name: Value should have at least 1 item"),
        ("x" * 101, "name: Value should have at most 100 items"),
        ("nightly\x1b[2Jjob", "name: String should match pattern"),
    ],
)
def test_a_key_name_the_api_would_refuse_is_refused_before_a_key_is_made(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, name: str, expected: str
) -> None:
    ok(qortex, "tenants", "create", "acme")
    assert_one_line_error(
        invoke_narrow(qortex, monkeypatch, "keys", "create", "--tenant", "acme", "--name", name), expected
    )
    assert "owner" not in ok(qortex, "keys", "list", "--tenant", "acme").stdout


def test_a_key_name_is_stored_without_surrounding_spaces_as_through_the_api(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme")
    ok(qortex, "keys", "create", "--tenant", "acme", "--name", "  nightly job  ")
    assert "│ nightly job │" in ok(qortex, "keys", "list", "--tenant", "acme").stdout


@pytest.mark.parametrize("name", ["[/]", "[bold red]owner[/] key", "[link=https://evil.example]docs[/link]"])
def test_a_key_name_is_listed_as_written_never_as_console_markup(qortex: CliRunner, name: str) -> None:
    """A tenant's admin names keys through the API: the operator sees the text, neither styled nor crashed."""
    ok(qortex, "tenants", "create", "acme")
    ok(qortex, "keys", "create", "--tenant", "acme", "--name", name)
    listed = ok(qortex, "keys", "list", "--tenant", "acme").stdout
    assert re.search(rf"│ {re.escape(name)} +│", listed), listed


def test_an_expiry_beyond_a_century_is_a_usage_error_not_a_crash(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme")
    result = invoke(qortex, "keys", "create", "--tenant", "acme", "--expires-in-days", "100000000")
    assert result.exit_code == 2
    assert "Traceback" not in result.output + result.stderr
    assert "less than or equal to 36500" in result.stderr


def test_several_tenants_need_a_tenant_option(qortex: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(qortex, "tenants", "create", "acme")
    ok(qortex, "tenants", "create", "globex")
    result = invoke_narrow(qortex, monkeypatch, "keys", "list")
    assert_one_line_error(result, "several tenants exist; name one with --tenant")


def test_predict_reads_a_csv_of_columns_and_writes_csv(qortex: CliRunner, tmp_path: Path) -> None:
    columns = {"rising": series(80, 1, 0.5), "falling": series(80, 2, -0.5), "short-tail": series(40, 3, 0.0)}
    source = tmp_path / "series.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in range(80):
            writer.writerow([f"{values[row]:.6f}" if row < len(values) else "" for values in columns.values()])
    output = tmp_path / "out.csv"

    result = ok(qortex, "predict", str(source), "--output", str(output))

    assert "Wrote 3 predictions" in result.stdout
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [r["source"] for r in rows] == list(columns)
    for row in rows:
        assert row["direction"] in {"up", "down", "neutral"}
        assert 0.5 <= float(row["confidence"]) <= 1.0
        assert 0.0 <= float(row["probability_up"]) <= 1.0


def test_predict_reads_json_and_writes_json(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps([{"source": "cpu", "values": series(64, 4, 0.2)}, series(32, 5, -0.2)]))
    output = tmp_path / "out.json"

    ok(qortex, "predict", str(source), "-o", str(output))

    answers = json.loads(output.read_text())
    assert [a["source"] for a in answers] == ["cpu", "series-1"]
    for answer in answers:
        assert answer["direction"] in {"up", "down", "neutral"}
        assert answer["confidence"] == pytest.approx(max(answer["probability_up"], 1 - answer["probability_up"]))
        assert answer["factors"] and answer["timings_ms"]


def test_predict_writes_json_to_stdout_without_an_output(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"memory": series(48, 6, 0.1)}))
    answers = json.loads(ok(qortex, "predict", str(source)).stdout)
    assert [(a["source"], a["direction"] in {"up", "down", "neutral"}) for a in answers] == [("memory", True)]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "nan.csv",
            "a,b\n" + "\n".join(f"{i},{'nan' if i == 5 else i}" for i in range(20)),
            "value at index 5 is NaN; all values must be finite",
        ),
        ("short.json", json.dumps({"tiny": [1.0, 2.0, 3.0]}), "has 3 values, at least 8 are required"),
        ("text.csv", "a\n1\n2\nthree\n", "'three' is not a number"),
        ("scalar.json", json.dumps({"values": 3}), "must be one-dimensional"),
        ("text.json", json.dumps("just text"), "a JSON file holds a list of series"),
        ("flat.json", json.dumps(list(range(10))), "a list of numbers is one series: wrap it in a list"),
        ("broken.json", "[[1, 2,", "not a file of series"),
        ("strings.json", json.dumps([[str(i) for i in range(8)]]), "values must be real numbers"),
        (
            "null.json",
            json.dumps({"gap": [*range(7), None]}),
            "got NoneType (first offending value at index 7) ('gap')",
        ),
        ("booleans.json", json.dumps([[True, False] * 4]), "values must be real numbers"),
        ("wide.csv", "a\n" + "\n".join(f"{i},{i * 100}" for i in range(1, 10)), "line 2 has 2 cells but the header"),
        ("novalues.json", json.dumps([{"source": "cpu", "value": [1] * 8}]), "series 0 ('cpu') has no \"values\""),
        # Two series under one name: one would be dropped silently, whichever the parser keeps.
        ("twice.json", '{"cpu": [1,2,3,4,5,6,7,8], "cpu": [8,7,6,5,4,3,2,1]}', "duplicate key 'cpu'"),
        ("twice.csv", "cpu,cpu\n" + "\n".join(f"{i},{i}" for i in range(10)), "the header names 'cpu' twice"),
        ("unnamed.csv", ",series-0\n" + "\n".join(f"{i},{i}" for i in range(10)), "the header names 'series-0' twice"),
        (
            "twice-listed.json",
            json.dumps([{"source": "cpu", "values": [1] * 8}, {"source": "cpu", "values": [2] * 8}]),
            "series 1: the name 'cpu' is taken by an earlier series",
        ),
        (
            "unnamed.json",
            json.dumps([[1] * 8, {"source": "series-0", "values": [2] * 8}]),
            "series 1: the name 'series-0' is taken by an earlier series",
        ),
        # A quote left open makes one cell of the rest of the file, past what the csv module reads in one cell.
        (
            "open-quote-short.csv",
            'a\n1\n"2\n' + "3\n" * 1000,
            "line 3: " + repr("2\n" + "3\n" * 19) + "... is not a number",
        ),
        (
            "open-quote.csv",
            'a\n"1\n' + "2\n" * 70_000,
            "line 2: field larger than field limit (131072); is a quote left open there?",
        ),
    ],
)
def test_predict_refuses_a_bad_series_with_one_clear_line(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, content: str, expected: str
) -> None:
    source = tmp_path / name
    source.write_text(content)
    result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "-o", str(tmp_path / "out.json"))
    assert_one_line_error(result, expected)
    assert not (tmp_path / "out.json").exists()


def test_predict_says_a_json_nested_too_deeply_is_that_and_not_a_naming_problem(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "deep.json"
    source.write_text('{"a": ' * 1000 + "1" + "}" * 1000)
    result = invoke_narrow(qortex, monkeypatch, "predict", str(source))
    assert_one_line_error(result, "nested too deeply in the JSON")
    assert "name" not in result.stderr


def test_predict_keeps_its_progress_out_of_the_json_it_writes_to_stdout(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Enough series for a progress bar: it goes to stderr, so stdout holds the JSON alone."""
    monkeypatch.setattr(sys.modules["qortex.cli.predict"], "CHUNK", 2)  # qortex.cli.predict is also the command
    source = tmp_path / "series.json"
    source.write_text(json.dumps({f"s{i}": series(16, i, 0.1) for i in range(3)}))
    result = ok(qortex, "predict", str(source))
    assert result.stdout.startswith("[")
    assert [a["source"] for a in json.loads(result.stdout)] == ["s0", "s1", "s2"]


def test_predict_names_a_json_series_with_a_null_source_as_one_without(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "series.json"
    source.write_text(
        json.dumps([{"source": None, "values": series(16, 1, 0.1)}, {"source": "cpu", "values": [1] * 8}])
    )
    assert [a["source"] for a in json.loads(ok(qortex, "predict", str(source)).stdout)] == ["series-0", "cpu"]


def test_predict_trims_csv_header_names_as_it_trims_values(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "spaced.csv"
    source.write_text("cpu, memory\n" + "\n".join(f"{v:.3f}, {v:.3f}" for v in series(40, 8, 0.1)))
    answers = json.loads(ok(qortex, "predict", str(source)).stdout)
    assert [a["source"] for a in answers] == ["cpu", "memory"]


def test_an_empty_qortex_variable_counts_as_unset(
    qortex: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QORTEX_DATA_DIR", "")
    monkeypatch.setenv("QORTEX_PORT", "")
    settings = get_settings()
    assert (settings.data_dir, settings.port) == (Path(".qortex"), 8080)
    ok(qortex, "migrate")
    assert (tmp_path / ".qortex" / "qortex.db").is_file()
    assert not (tmp_path / "qortex.db").exists()


def test_predict_names_the_file_and_byte_that_is_not_utf8(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes("température\n".encode("latin-1") + b"1\n" * 20)
    result = invoke(qortex, "predict", str(source))
    assert result.exit_code == 1
    assert f"{source}: not UTF-8 text (byte 4 is 0xe9)" in result.stderr


def test_predict_skips_a_column_with_no_header_and_no_values_as_spreadsheets_export(
    qortex: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "sheet.csv"
    source.write_text("cpu,,memory,\n" + "\n".join(f"{v:.3f},,{v:.3f}," for v in series(40, 8, 0.1)))
    answers = json.loads(ok(qortex, "predict", str(source)).stdout)
    assert [a["source"] for a in answers] == ["cpu", "memory"]


def test_predict_reads_a_csv_with_a_byte_order_mark(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "excel.csv"
    source.write_text("cpu,memory\n" + "\n".join(f"{v:.3f},{v:.3f}" for v in series(40, 8, 0.1)), encoding="utf-8-sig")
    answers = json.loads(ok(qortex, "predict", str(source)).stdout)
    assert [a["source"] for a in answers] == ["cpu", "memory"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--set", "window=32"), "set the window with --window, not --set window=..."),
        (("--json-out", "/nonexistent/report.json"), "/nonexistent is not a writable directory"),
        (("--json-out", "."), "cannot write .: it is a directory"),
    ],
)
def test_eval_refuses_contradictory_or_unwritable_options_before_evaluating(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: str
) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("the datasets were loaded before the options were checked")

    monkeypatch.setattr("qortex.engine.datasets.load_collection", never)
    assert_one_line_error(invoke_narrow(qortex, monkeypatch, "eval", *args), expected)


def test_predict_with_a_missing_model_is_one_clear_line(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps([series(32, 7, 0.1)]))
    result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "--model", str(tmp_path / "missing"))
    assert_one_line_error(result, "artifact file not found")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("QORTEX_PORT", "abc", "invalid settings: QORTEX_PORT: Input should be a valid integer"),
        ("QORTEX_DATABASE_URL", "bogus://x", "Can't load plugin: sqlalchemy.dialects:bogus"),
        # Infinite or enormous leases would start a server whose Redis limits fail at start or on every request.
        (
            "QORTEX_LIMITS_CONCURRENCY_LEASE_SECONDS",
            "inf",
            "invalid settings: QORTEX_LIMITS_CONCURRENCY_LEASE_SECONDS: Input should be a finite number",
        ),
        (
            "QORTEX_LIMITS_CONCURRENCY_LEASE_SECONDS",
            "1e17",
            "invalid settings: QORTEX_LIMITS_CONCURRENCY_LEASE_SECONDS: Input should be less than or equal to 86400",
        ),
        (
            "QORTEX_LIMITS_AUDIT_INTERVAL_SECONDS",
            "infinity",
            "invalid settings: QORTEX_LIMITS_AUDIT_INTERVAL_SECONDS: Input should be a finite number",
        ),
        # A wait nobody would honour: a Retry-After or a login backoff of centuries is a typo, not a policy.
        (
            "QORTEX_ENGINE_RETRY_AFTER_SECONDS",
            "100000000000000000000000000000",
            "invalid settings: QORTEX_ENGINE_RETRY_AFTER_SECONDS: Input should be less than or equal to 3600",
        ),
        # A series bound below the largest batch would admit such a batch only into an empty queue.
        (
            "QORTEX_ENGINE_QUEUE_SERIES",
            "999",
            "invalid settings: QORTEX_ENGINE_QUEUE_SERIES: Value error, must be at least QORTEX_BATCH_MAX_ITEMS (1000)",
        ),
        (
            "QORTEX_ENGINE_QUEUE_SERIES",
            "100000000",
            "invalid settings: QORTEX_ENGINE_QUEUE_SERIES: Input should be less than or equal to 1000000",
        ),
        # argon2 needs 8 KiB per lane: the server would start, then answer every login with a 500.
        (
            "QORTEX_PASSWORD_MEMORY_KIB",
            "16",
            "invalid settings: QORTEX_PASSWORD_PARALLELISM: Value error, 4 lanes need QORTEX_PASSWORD_MEMORY_KIB"
            " of at least 32 (8 per lane), not 16",
        ),
        # Each pooled connection would open its own, empty database.
        (
            "QORTEX_DATABASE_URL",
            "sqlite+aiosqlite:///:memory:",
            "invalid settings: QORTEX_DATABASE_URL: Value error, an in-memory SQLite database cannot be shared",
        ),
        (
            "QORTEX_DATABASE_URL",
            "sqlite:///file:qx?mode=memory&uri=true",
            "invalid settings: QORTEX_DATABASE_URL: Value error, an in-memory SQLite database cannot be shared",
        ),
        (
            "QORTEX_DATABASE_URL",
            "sqlite:///file::memory:?cache=shared&uri=true",
            "invalid settings: QORTEX_DATABASE_URL: Value error, an in-memory SQLite database cannot be shared",
        ),
        (
            "QORTEX_LOGIN_MAX_BACKOFF_SECONDS",
            "31536000",
            "invalid settings: QORTEX_LOGIN_MAX_BACKOFF_SECONDS: Input should be less than or equal to 86400",
        ),
    ],
)
def test_a_bad_setting_is_one_clear_line(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    assert_one_line_error(invoke_narrow(qortex, monkeypatch, "tenants", "list"), expected)


@pytest.mark.parametrize(
    ("settings", "args", "expected"),
    [
        ({"QORTEX_DATABASE_URL": "garbage"}, ("migrate",), "QORTEX_DATABASE_URL: Could not parse SQLAlchemy URL"),
        (
            {"QORTEX_DATABASE_URL": "mysql://x@localhost/db"},
            ("migrate",),
            "QORTEX_DATABASE_URL: its database driver is not installed (No module named 'MySQLdb')",
        ),
        (
            {"QORTEX_DATABASE_URL": "sqlite:///{tmp}/a-file/x.db"},
            ("migrate",),
            "database: unable to open database file",
        ),
        (
            {"QORTEX_DATABASE_URL": "sqlite:///{tmp}/a-file/x.db", "QORTEX_AUTO_MIGRATE": "false"},
            ("tenants", "list"),
            "database: unable to open database file",
        ),
        ({"QORTEX_AUTO_MIGRATE": "false"}, ("tenants", "list"), "the database is not migrated: run `qortex migrate`"),
        ({"QORTEX_DATA_DIR": "{tmp}/a-file"}, ("init",), "QORTEX_DATA_DIR: {tmp}/a-file exists and is not a directory"),
        (
            {"QORTEX_DATA_DIR": "{tmp}/a-file/data"},
            ("tenants", "list"),
            "QORTEX_DATA_DIR: cannot create {tmp}/a-file/data: Not a directory",
        ),
    ],
)
def test_a_database_failure_is_one_clear_line(
    qortex: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings: dict[str, str],
    args: tuple[str, ...],
    expected: str,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    get_settings.cache_clear()
    result = invoke_narrow(qortex, monkeypatch, *args)
    assert_one_line_error(result, expected.format(tmp=tmp_path))
    assert "[SQL:" not in result.stderr
    assert result.stdout == ""  # no log line mixed into a command's output


@pytest.mark.skipif(
    not hasattr(aiosqlite.core, "_connection_worker_thread"),
    reason="before aiosqlite 0.22 a failed connection's thread stops on a sentinel, without the event loop",
)
def test_a_database_file_that_cannot_be_opened_leaves_no_thread_to_crash_after_the_error(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """aiosqlite stops the thread of a connection that failed to open without waiting for it. On a busy machine
    that thread answers after the command's event loop has closed, and dies printing a traceback."""
    worker = aiosqlite.core._connection_worker_thread

    class LateToStop:
        def __init__(self, queue: Any) -> None:
            self.queue = queue

        def get(self) -> Any:
            future, function = self.queue.get()
            if getattr(function, "__name__", "") == "close_and_stop":
                time.sleep(0.5)
            return future, function

    monkeypatch.setattr(aiosqlite.core, "_connection_worker_thread", lambda queue: worker(LateToStop(queue)))
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    monkeypatch.setenv("QORTEX_DATABASE_URL", f"sqlite:///{tmp_path}/missing/x.db")
    get_settings.cache_clear()
    running = set(threading.enumerate())

    result = invoke_narrow(qortex, monkeypatch, "tenants", "list")

    for thread in set(threading.enumerate()) - running:
        thread.join(5)
    assert_one_line_error(result, "database: unable to open database file")
    assert [str(crash.exc_value) for crash in crashed] == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"QORTEX_DATABASE_URL": "{url}_nonexistent_db"}, "does not exist"),
        ({"QORTEX_DATABASE_SCHEMA": "nonexistent_schema"}, "check that the schema named by QORTEX_DATABASE_SCHEMA"),
        ({"QORTEX_DATABASE_APP_ROLE": "nonexistent_role"}, 'role "nonexistent_role" does not exist'),
    ],
)
def test_a_postgres_failure_is_one_line_without_the_password(
    qortex: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    postgres_problem: str | None,
    settings: dict[str, str],
    expected: str,
) -> None:
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    # The password is not checked on the test server's trusted connections, but must never be printed.
    url = POSTGRES_URL.replace("postgres@", "postgres:hunter2-secret@", 1)
    monkeypatch.setenv("QORTEX_DATABASE_URL", url)
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value.format(url=url))
    get_settings.cache_clear()
    result = invoke_narrow(qortex, monkeypatch, "migrate")
    assert_one_line_error(result, expected)
    assert "hunter2" not in result.output + result.stderr


def test_an_app_role_that_runs_the_migrations_is_refused_before_anything_changes(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, postgres_problem: str | None
) -> None:
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_run_sql(f"CREATE SCHEMA {schema}"))
    try:
        monkeypatch.setenv("QORTEX_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("QORTEX_DATABASE_SCHEMA", schema)
        # Granting to and revoking from the owner would take its own rights on alembic_version and audit_events.
        owner = str(make_url(POSTGRES_URL).username)
        monkeypatch.setenv("QORTEX_DATABASE_APP_ROLE", owner)
        get_settings.cache_clear()
        for command in ("migrate", "init"):
            result = invoke_narrow(qortex, monkeypatch, command)
            assert_one_line_error(result, f"QORTEX_DATABASE_APP_ROLE names {owner}, the role that runs migrations")
        assert asyncio.run(_tables_in(schema)) == 0
    finally:
        asyncio.run(_run_sql(f"DROP SCHEMA {schema} CASCADE"))


async def _tables_in(schema: str) -> int:
    db = Database(POSTGRES_URL)
    try:
        async with db.engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_tables WHERE schemaname = :schema")
            return int((await connection.execute(query, {"schema": schema})).scalar_one())
    finally:
        await db.dispose()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_every_command_is_covered_by_the_help_test() -> None:
    expected = {
        ("serve",),
        ("migrate",),
        ("init",),
        ("predict",),
        ("eval",),
        ("tenants", "create"),
        ("tenants", "limits"),
        ("keys", "revoke"),
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "qortex")
def test_help_works_for_every_command(qortex: CliRunner, path: tuple[str, ...]) -> None:
    result = ok(qortex, *path, "--help")
    assert "Usage:" in result.stdout


@pytest.mark.parametrize(
    ("spoiled", "other", "change", "reason"),
    [
        ("globex", "acme", "outcome = 'failure'", "event 1 was altered"),
        ("acme", "globex", "details = '{broken'", "event 1 cannot be read: details is not a JSON object"),
    ],
)
def test_audit_verify_checks_every_tenant_and_reports_a_broken_chain(
    qortex: CliRunner, tmp_path: Path, spoiled: str, other: str, change: str, reason: str
) -> None:
    """An altered event and one that cannot be read both break their chain; the other tenant is still checked."""
    ok(qortex, "tenants", "create", "acme")
    ok(qortex, "tenants", "create", "globex")
    intact = ok(qortex, "audit", "verify").stdout
    assert re.search(r"acme\W+intact", intact) and re.search(r"globex\W+intact", intact)
    with sqlite3.connect(tmp_path / "data" / "qortex.db") as connection:
        connection.execute(
            f"UPDATE audit_events SET {change} WHERE seq = 1 AND tenant_id = (SELECT id FROM tenants WHERE name = ?)",
            (spoiled,),
        )
    result = invoke(qortex, "audit", "verify")
    assert result.exit_code == 1
    assert re.search(rf"{spoiled}\W+BROKEN\W+0\W+1\W+{re.escape(reason)}", result.stdout), result.stdout
    assert re.search(rf"{other}\W+intact", result.stdout), result.stdout
    assert f"the audit chain of {spoiled} is broken" in result.stderr
    assert re.search(rf"{other}\W+intact", ok(qortex, "audit", "verify", "--tenant", other).stdout)


def test_tenants_suspend_and_resume(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "create", "acme")
    assert "Suspended tenant acme." in ok(qortex, "tenants", "suspend", "acme").stdout
    assert "already suspended" in ok(qortex, "tenants", "suspend", "acme").stdout
    assert re.search(r"acme\W.*\Wsuspended\W", ok(qortex, "tenants", "list").stdout)
    assert "Resumed tenant acme." in ok(qortex, "tenants", "resume", "acme").stdout
    assert re.search(r"acme\W.*\Wactive\W", ok(qortex, "tenants", "list").stdout)
    assert_one_line_error(invoke(qortex, "tenants", "suspend", "nobody"), "no tenant named 'nobody'")


def test_a_command_leaves_no_logger_bound_to_a_stream_the_runner_closed(qortex: CliRunner) -> None:
    ok(qortex, "tenants", "list")
    structlog.get_logger("qortex.test").error("logged after the command")  # raised on a closed stream before


def test_an_operator_can_lift_a_tenants_allow_list_and_signing_requirement(qortex: CliRunner, tmp_path: Path) -> None:
    """The way back for a tenant whose allow-list or signing requirement locked every credential out."""
    ok(qortex, "tenants", "create", "acme")
    database = tmp_path / "data" / "qortex.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE tenants SET ip_allowlist = '[\"192.0.2.0/24\"]', require_signed_requests = 1 WHERE name = 'acme'"
        )
    lifted = ok(qortex, "tenants", "reset-request-policy", "acme").stdout
    assert "acme" in lifted and "allow-list" in lifted
    with sqlite3.connect(database) as connection:
        allowlist, required = connection.execute(
            "SELECT ip_allowlist, require_signed_requests FROM tenants WHERE name = 'acme'"
        ).fetchone()
        actor, details = connection.execute(
            "SELECT actor_kind, details FROM audit_events WHERE action = 'tenant.security_changed'"
        ).fetchone()
    assert (json.loads(allowlist), required) == ([], 0)
    assert actor == "operator"
    assert json.loads(details) == {
        "ip_allowlist": {"from": ["192.0.2.0/24"], "to": []},
        "require_signed_requests": {"from": True, "to": False},
        "confirm_lockout": False,
    }
    assert re.search(r"acme\W+intact", ok(qortex, "audit", "verify").stdout)
    assert "nothing to lift" in ok(qortex, "tenants", "reset-request-policy", "acme").stdout
    assert_one_line_error(invoke(qortex, "tenants", "reset-request-policy", "nobody"), "no tenant named 'nobody'")


def test_predict_refuses_to_write_over_its_own_input(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "series.json"
    content = json.dumps({"cpu": series(32, 9, 0.1)})
    source.write_text(content)
    (tmp_path / "link.json").symlink_to(source)
    for output in (source, tmp_path / "link.json", tmp_path / "." / "series.json"):
        result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "-o", str(output))
        assert_one_line_error(result, f"{output} is the input file")
        assert source.read_text() == content


@pytest.mark.parametrize("name", ["out.tsv", "out.txt", "out", "out.csv.bak"])
def test_predict_refuses_an_output_it_cannot_tell_the_format_of_before_predicting(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("qortex.engine.Predictor.load_default", never)
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"cpu": series(32, 9, 0.1)}))
    result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "-o", str(tmp_path / name))
    assert_one_line_error(result, "name the output .csv or .json")
    assert not (tmp_path / name).exists()


def test_predict_reads_the_output_format_from_the_extension_in_any_case(qortex: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"cpu": series(32, 9, 0.1)}))
    ok(qortex, "predict", str(source), "-o", str(tmp_path / "OUT.CSV"))
    ok(qortex, "predict", str(source), "-o", str(tmp_path / "OUT.JSON"))
    assert next(csv.DictReader(io.StringIO((tmp_path / "OUT.CSV").read_text())))["source"] == "cpu"
    assert json.loads((tmp_path / "OUT.JSON").read_text())[0]["source"] == "cpu"


def test_predict_that_cannot_finish_writing_leaves_the_previous_output_whole(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A full disk (here a file-size limit) stops the write part way: the output is the old one, never a part."""
    source = tmp_path / "series.json"
    source.write_text(json.dumps({f"s{i}": series(64, i, 0.1) for i in range(20)}))
    output = tmp_path / "out.json"
    output.write_text("[]")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "-o", str(output))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert_one_line_error(result, f"cannot write {output}: File too large")
    assert output.read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "series.json"]  # no part left beside it


def test_predict_output_replaces_the_file_a_link_points_to_with_the_usual_permissions(
    qortex: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"cpu": series(32, 9, 0.1)}))
    target = tmp_path / "results.csv"
    target.write_text("old")
    (tmp_path / "latest.csv").symlink_to(target)
    ok(qortex, "predict", str(source), "-o", str(tmp_path / "latest.csv"))
    assert (tmp_path / "latest.csv").is_symlink()
    assert next(csv.DictReader(io.StringIO(target.read_text())))["source"] == "cpu"
    ok(qortex, "predict", str(source), "-o", str(tmp_path / "new.json"))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("output", "expected"),
    [("missing/out.json", "missing is not a writable directory"), ("folder.json", "folder.json: it is a directory")],
)
def test_predict_refuses_an_output_it_cannot_write_before_predicting(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, output: str, expected: str
) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("qortex.engine.Predictor.load_default", never)
    (tmp_path / "folder.json").mkdir()
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"cpu": series(32, 9, 0.1)}))
    result = invoke_narrow(qortex, monkeypatch, "predict", str(source), "-o", str(tmp_path / output))
    assert_one_line_error(result, expected)


def test_predict_stopped_by_sigterm_while_writing_leaves_no_part_behind(tmp_path: Path) -> None:
    source = tmp_path / "series.json"
    source.write_text(json.dumps({"cpu": series(32, 9, 0.1)}))
    output = tmp_path / "out.json"
    output.write_text("[]")
    # SIGTERM arrives once the predictions are in the file beside the output, before it replaces the output.
    script = (
        "import os, signal, sys\n"
        "from qortex.cli import app\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGTERM)\n"
        "app(sys.argv[1:])\n"
    )
    env = {**os.environ, "QORTEX_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", script, "predict", str(source), "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "Traceback" not in done.stderr
    assert output.read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "series.json"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--datasets", "nile", "--window", "16", "--horizon", "64", "--folds", "20"),
            "no series in 'nile' is long enough for 20 folds with window 16 and horizon 64; try a smaller --horizon"
            " or fewer --folds",
        ),
        (
            ("--datasets", "nile", "--window", "128"),
            "no series in 'nile' is long enough for 4 folds with window 128 and horizon 1; try --window 16",
        ),
    ],
)
def test_eval_with_nothing_to_score_names_what_made_every_series_too_short(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: str
) -> None:
    assert_one_line_error(invoke_narrow(qortex, monkeypatch, "eval", *args, "--methods", "majority"), expected)


def test_eval_scores_a_method_named_twice_once(qortex: CliRunner, tmp_path: Path) -> None:
    """As a dataset named twice is: not a failure after the whole evaluation has run."""
    report = tmp_path / "report.json"
    args = ("--datasets", "nile", "--window", "16", "--folds", "2", "--methods", "majority, majority")
    ok(qortex, "eval", *args, "--json-out", str(report))
    rows = json.loads(report.read_text())["rows"]
    assert [r["method"] for r in rows if r["dataset"] == "nile"] == ["majority"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.1", "cannot listen on 192.0.2.1:{port}: Cannot assign requested address; set QORTEX_HOST"),
        ("qortex-test.invalid", "cannot listen on qortex-test.invalid:{port}: "),
    ],
)
def test_serve_on_an_address_that_is_not_this_machines_names_the_host_not_the_port(
    qortex: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str, expected: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on, so only the host can be wrong
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("QORTEX_HOST", host)
    get_settings.cache_clear()
    result = invoke_narrow(qortex, monkeypatch, "serve", "--port", str(port))
    assert_one_line_error(result, expected.format(port=port))
    assert "set QORTEX_HOST" in result.stderr
    assert "stop what holds it" not in result.stderr
    assert not (tmp_path / "data" / "qortex.db").exists()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TimeoutError(), "database: timed out"),
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), "database: [Errno 111] Connect call"),
    ],
)
@pytest.mark.parametrize(("auto_migrate", "args"), [("true", ("migrate",)), ("false", ("tenants", "list"))])
def test_a_database_that_cannot_be_reached_is_named_in_the_line(
    qortex: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    failure: OSError,
    expected: str,
    auto_migrate: str,
    args: tuple[str, ...],
) -> None:
    """The driver's own error, raised before SQLAlchemy wraps anything: a server that accepts the connection but never
    answers times out with an empty message."""
    import asyncpg

    async def unreachable(*_: object, **__: object) -> None:
        raise failure

    monkeypatch.setattr(asyncpg, "connect", unreachable)
    monkeypatch.setenv("QORTEX_DATABASE_URL", "postgresql://qortex@127.0.0.1:1/qortex")
    monkeypatch.setenv("QORTEX_AUTO_MIGRATE", auto_migrate)
    get_settings.cache_clear()
    assert_one_line_error(invoke_narrow(qortex, monkeypatch, *args), expected)
