"""Replicas migrating one PostgreSQL schema at once: one migrates and grants, the others wait and find it done."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import APP_POSTGRES_URL, APP_ROLE, POSTGRES_URL, _run_sql, require_service
from tests.integration.conftest import QORTEX

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


def test_replicas_migrating_and_granting_at_once_all_succeed(replica_env: dict[str, str]) -> None:
    # First from an empty schema, then as every later start does against a current one.
    for _ in range(2):
        replicas = [
            subprocess.Popen(
                [str(QORTEX), "migrate"], env=replica_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(REPLICAS)
        ]
        outputs = [replica.communicate(timeout=MIGRATE_TIMEOUT_SECONDS)[0].decode() for replica in replicas]
        failed = [output for replica, output in zip(replicas, outputs, strict=True) if replica.returncode != 0]
        assert not failed, failed[0]
