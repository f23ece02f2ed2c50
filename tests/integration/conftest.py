"""Real `qortex serve` processes on 127.0.0.1, each with its own data directory, always killed at teardown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import POSTGRES_URL, _run_sql, require_service

FIRST_KEY = re.compile(r"\bqx_[0-9a-f]{32}_[A-Za-z0-9_-]+")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
QORTEX = Path(sys.executable).with_name("qortex")
REDIS_URL = os.environ.get("QORTEX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_problem() -> str | None:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await asyncio.wait_for(client.ping(), timeout=2)
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url() -> str:
    """The test Redis; skipped locally without one, a failure in CI."""
    problem = await redis_problem()
    if problem is not None:
        require_service("Redis", problem)
    return REDIS_URL


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """One `qortex serve` process: where it listens, what it printed, and the key it printed (if any)."""

    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log_path: Path
    first_key: str | None = field(default=None)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def headers(self) -> dict[str, str]:
        if self.first_key is None:
            raise AssertionError(f"this server printed no key:\n{self.output}")
        return {"Authorization": f"Bearer {self.first_key}"}

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as in a power cut of the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """SIGTERM and a graceful shutdown; SIGKILL when it takes too long."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(base_url=server.base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(f"qortex serve exited with {server.process.returncode}:\n{server.output}")
            try:
                if http.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"qortex serve was not ready within {READY_TIMEOUT_SECONDS} s:\n{server.output}")


def start_server(data_dir: Path, *, env: dict[str, str] | None = None) -> RunningServer:
    """Starts `qortex serve` on a free port of 127.0.0.1 and returns once /health/ready answers 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QORTEX_")}
    environment.update(
        QORTEX_DATA_DIR=str(data_dir),
        QORTEX_HOST="127.0.0.1",
        QORTEX_PORT=str(port),
        QORTEX_LOG_LEVEL="warning",
        COLUMNS="200",
    )
    environment.update(env or {})
    log_path = data_dir.parent / f"{data_dir.name}-serve-{port}.log"
    # A file, not a pipe: a pipe nobody drains would block the server once its buffer fills.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(QORTEX), "serve"], env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir.parent
        )
    server = RunningServer(process=process, base_url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.kill()
        raise
    keys = FIRST_KEY.findall(server.output)
    if len(keys) > 1:
        server.kill()
        raise AssertionError(f"qortex serve printed {len(keys)} keys:\n{server.output}")
    server.first_key = keys[0] if keys else None
    return server


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def launch_server() -> Iterator[ServerFactory]:
    """Starts servers on demand (`launch_server(data_dir, env=...)`) and kills every one at teardown."""
    started: list[RunningServer] = []

    def launch(data_dir: Path, *, env: dict[str, str] | None = None) -> RunningServer:
        server = start_server(data_dir, env=env)
        started.append(server)
        return server

    yield launch
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One embedded-mode server (SQLite) shared by a module's tests; killed when the module ends."""
    running = start_server(tmp_path_factory.mktemp("server") / "data")
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def storage_env(backend: str) -> Iterator[dict[str, str]]:
    """Server environment for one backend: embedded SQLite, or a fresh PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield {}
        return
    # `backend` has already skipped (or, in CI, failed) when PostgreSQL is unreachable.
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_run_sql(f"CREATE SCHEMA {schema}"))
    try:
        yield {"QORTEX_DATABASE_URL": POSTGRES_URL, "QORTEX_DATABASE_SCHEMA": schema}
    finally:
        asyncio.run(_run_sql(f"DROP SCHEMA {schema} CASCADE"))
