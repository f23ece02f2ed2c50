"""PostgreSQL URL parameters reach the driver typed, under its names, or are refused in one line."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url
from tests.conftest import POSTGRES_URL, require_service

from qortex.core.database import Database, postgres_connect_args


def test_libpq_names_and_numbers_become_the_drivers_arguments() -> None:
    url, args = postgres_connect_args(
        "postgresql+asyncpg://app:pw@db:5432/qortex?sslmode=require&connect_timeout=3&application_name=api"
        "&command_timeout=30&statement_cache_size=0"
    )
    assert url == "postgresql+asyncpg://app:pw@db:5432/qortex"
    assert args == {
        "ssl": "require",
        "timeout": 3.0,
        "server_settings": {"application_name": "api"},
        "command_timeout": 30.0,
        "statement_cache_size": 0,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("foo=1", "database URL parameter 'foo' is not supported; use one of"),
        ("timeout=soon", "database URL parameter timeout='soon' must be a number"),
        ("timeout=1&timeout=2", "database URL parameter 'timeout' is given more than once"),
        ("sslmode=require&ssl=disable", "database URL parameter 'ssl' is given more than once"),
        ("prepared_statement_cache_size=none", "prepared_statement_cache_size='none' must be a number"),
    ],
)
def test_an_unknown_or_ill_typed_parameter_is_refused_by_name(query: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        Database(f"postgresql://app@db/qortex?{query}")


async def test_a_url_with_libpq_parameters_connects() -> None:
    db = Database(f"{POSTGRES_URL}?sslmode=disable&connect_timeout=5&application_name=qortex-test")
    try:
        try:
            await asyncio.wait_for(db.ping(), timeout=10)
        except Exception as error:
            require_service("PostgreSQL", f"{type(error).__name__}: {error}")
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("SHOW application_name")).scalar() == "qortex-test"
    finally:
        await db.dispose()


def test_what_sqlalchemy_reads_itself_stays_in_the_url() -> None:
    """A socket directory or several hosts (`host`), and SQLAlchemy's own statement cache, as before."""
    url, args = postgres_connect_args(
        "postgresql://app@/qortex?host=/var/run/postgresql&prepared_statement_cache_size=0&sslmode=require"
    )
    assert url == "postgresql://app@/qortex?host=%2Fvar%2Frun%2Fpostgresql&prepared_statement_cache_size=0"
    assert args == {"ssl": "require"}
    url, args = postgres_connect_args(
        "postgresql://app@/qortex?host=db1:5432&host=db2:5432&target_session_attrs=read-write"
    )
    assert url == "postgresql://app@/qortex?host=db1%3A5432&host=db2%3A5432"
    assert args == {"target_session_attrs": "read-write"}


async def test_a_url_naming_its_hosts_and_statement_cache_connects() -> None:
    host, port = make_url(POSTGRES_URL).host, make_url(POSTGRES_URL).port or 5432
    url = make_url(POSTGRES_URL).set(host="", port=None).render_as_string(hide_password=False)
    db = Database(
        f"{url}?host={host}:{port}&host={host}:{port}&prepared_statement_cache_size=0&target_session_attrs=any"
    )
    try:
        try:
            await asyncio.wait_for(db.ping(), timeout=10)
        except Exception as error:
            require_service("PostgreSQL", f"{type(error).__name__}: {error}")
    finally:
        await db.dispose()
