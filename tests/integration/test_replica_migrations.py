"""Replicas migrating one PostgreSQL schema at once: one migrates and grants (and creates the first tenant), the
others wait and find it done."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import APP_POSTGRES_URL, APP_ROLE, POSTGRES_URL, _run_sql, require_service
from tests.integration.conftest import FIRST_KEY, QORTEX

REPLICAS = 6
MIGRATE_TIMEOUT_SECONDS = 120


@pytest.fixture
def replica_env(postgres_problem: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_run_sql(f"CREATE SCHEMA {schema}"))
    try:
        yield {k: v for k, v in os.environ.items() if not k.startswith("QORTEX_")} | {
            "QORTEX_DATA_DIR": str(tmp_path_factory.mktemp("replica")),
            "QORTEX_DATABASE_URL": APP_POSTGRES_URL,
            "QORTEX_MIGRATION_DATABASE_URL": POSTGRES_URL,
            "QORTEX_DATABASE_APP_ROLE": APP_ROLE,
            "QORTEX_DATABASE_SCHEMA": schema,
        }
    finally:
        asyncio.run(_run_sql(f"DROP SCHEMA {schema} CASCADE"))


def _at_once(command: str, env: dict[str, str], replicas: int = REPLICAS) -> list[str]:
    """Runs `qortex COMMAND` in several processes at once; answers their outputs, all of which succeeded."""
    processes = [
        subprocess.Popen([str(QORTEX), command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(replicas)
    ]
    outputs = [process.communicate(timeout=MIGRATE_TIMEOUT_SECONDS)[0].decode() for process in processes]
    failed = [output for process, output in zip(processes, outputs, strict=True) if process.returncode != 0]
    assert not failed, failed[0]
    return outputs


def test_replicas_migrating_and_granting_at_once_all_succeed(replica_env: dict[str, str]) -> None:
    # First from an empty schema, then as every later start does against a current one.
    for _ in range(2):
        _at_once("migrate", replica_env)


def test_replicas_initialising_a_fresh_schema_at_once_all_succeed_and_print_one_owner_key(
    replica_env: dict[str, str],
) -> None:
    outputs = _at_once("init", replica_env, replicas=3)
    assert len(FIRST_KEY.findall("".join(outputs))) == 1, outputs
