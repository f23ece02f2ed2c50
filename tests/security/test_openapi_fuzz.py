"""Schemathesis against the OpenAPI document of a real server: at least 1,000 requests, zero 5xx."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import FIRST_KEY, RunningServer, start_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MIN_REQUESTS = 1000
RUN_TIMEOUT_SECONDS = 420
# Operations that may lock the fuzzing credential out (require signatures, rotate the signing secret,
# revoke keys, change passwords): fuzzed last, in their own run, so they don't starve the others.
LOCKOUT_OPERATIONS = (
    "PATCH /v1/tenant",
    "POST /v1/tenant/signing-secret",
    "DELETE /v1/api-keys/{key_id}",
    "POST /v1/auth/password",
)


def statuses(report: Path) -> collections.Counter[int]:
    """Status codes of every request a run sent, from its NDJSON event log (0: no answer)."""
    counted: collections.Counter[int] = collections.Counter()
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        for interaction in finished["recorder"].get("interactions", {}).values():
            response = interaction.get("response")
            counted[response["status_code"] if response else 0] += 1
    return counted


def fuzz(server: RunningServer, report: Path, selection: list[str], max_examples: int) -> collections.Counter[int]:
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.base_url}/openapi.json",
            *selection,
            "--checks",
            "not_a_server_error",
            f"--max-examples={max_examples}",
            "--seed=20261124",
            "--generation-database=none",
            "--no-shrink",
            "--header",
            f"Authorization: Bearer {server.first_key}",
            "--report=ndjson",
            f"--report-ndjson-path={report}",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    counted = statuses(report)
    failures = {status: n for status, n in counted.items() if status >= 500 or status == 0}
    assert not failures, f"server errors or no answer: {failures}\n{run.stdout[-4000:]}\n{server.output[-4000:]}"
    assert run.returncode == 0, run.stdout[-4000:]
    return counted


def enterprise_key(data_dir: Path) -> str:
    """A tenant on the largest plan (limits stay on, but don't starve the run) and an owner key for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QORTEX_")} | {"QORTEX_DATA_DIR": str(data_dir)}
    qortex = str(SCHEMATHESIS.with_name("qortex"))
    for command in (["tenants", "create", "fuzz", "--plan", "enterprise"], ["keys", "create", "--tenant", "fuzz"]):
        done = subprocess.run([qortex, *command], env=env, capture_output=True, text=True, timeout=120, check=True)
    [key] = FIRST_KEY.findall(done.stdout)
    return key


def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = enterprise_key(data_dir)
    server = start_server(data_dir)
    server.first_key = key
    try:
        main = fuzz(
            server,
            tmp_path / "main.ndjson",
            [f"--exclude-name={name}" for name in LOCKOUT_OPERATIONS],
            max_examples=60,
        )
        lockout = fuzz(
            server,
            tmp_path / "lockout.ndjson",
            [f"--include-name={name}" for name in LOCKOUT_OPERATIONS],
            max_examples=40,
        )
    finally:
        server.stop()
    total = sum(main.values()) + sum(lockout.values())
    print(f"schemathesis: {total} requests; main {dict(sorted(main.items()))}; lockout {dict(sorted(lockout.items()))}")
    assert total >= MIN_REQUESTS, f"only {total} requests"
    # Most requests must get past authentication, or the run would only have fuzzed the 401 path.
    assert main[401] < 0.3 * sum(main.values()), f"too many 401s: {dict(main)}"
