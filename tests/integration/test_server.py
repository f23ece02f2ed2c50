"""A real `qortex serve` over real HTTP: the first key, predictions, health, body limits, request ids, restarts."""

from __future__ import annotations

import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import FIRST_KEY, RunningServer, ServerFactory

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

MIB = 1024 * 1024


def series(n: int = 64, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in 100 + np.cumsum(rng.normal(size=n))]


def test_the_first_key_printed_by_serve_makes_and_reads_a_prediction(server: RunningServer) -> None:
    assert server.first_key is not None, server.output
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=10) as http:
        made = http.post("/v1/predictions", json={"source": "cpu", "values": series()})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["direction"] in {"up", "down", "neutral"}
        assert body["model"]["name"] == "default"

        fetched = http.get(f"/v1/predictions/{body['id']}")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == body


def test_requests_without_the_key_are_refused(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        anonymous = http.post("/v1/predictions", json={"source": "cpu", "values": series()})
        wrong = http.get("/v1/predictions", headers={"Authorization": f"Bearer qx_{'0' * 32}_nope"})
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"


def test_health_endpoints_answer_without_a_credential(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        live = http.get("/health/live")
        ready = http.get("/health/ready")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert {name: check["status"] for name, check in ready.json()["checks"].items()} == {
        "database": "ok",
        "engine": "ok",
        "disk": "ok",
    }


def test_a_body_over_ten_mib_is_refused_with_413(server: RunningServer) -> None:
    oversized = b'{"source": "x", "values": [' + b"1.0," * (10 * MIB // 4) + b"1.0]}"
    assert len(oversized) > 10 * MIB
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as http:
        response = http.post("/v1/predictions", content=oversized, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"].endswith("/payload-too-large")
    assert response.headers["x-request-id"]


def test_every_response_carries_a_request_id(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        echoed = http.get("/health/live", headers={"X-Request-ID": "trace-42"})
        missing = http.get("/v1/no-such-route")
    assert echoed.headers["x-request-id"] == "trace-42"
    assert missing.status_code == 404
    assert len(missing.headers["x-request-id"]) == 32
    assert missing.json()["instance"] == missing.headers["x-request-id"]


def test_a_second_start_on_the_same_data_dir_creates_no_key_and_says_how_to_get_one(
    launch_server: ServerFactory, tmp_path: Path
) -> None:
    first = launch_server(tmp_path / "data")
    assert first.first_key is not None, first.output
    first.stop()

    second = launch_server(tmp_path / "data")
    assert FIRST_KEY.search(second.output) is None, second.output
    assert "qortex keys create" in second.output
    with httpx.Client(base_url=second.base_url, headers=first.headers, timeout=10) as http:
        keys = http.get("/v1/api-keys")
    assert keys.status_code == 200, keys.text
    assert [k["name"] for k in keys.json()["items"]] == ["first owner key"]


def test_a_client_that_never_finishes_its_request_cannot_keep_a_stopping_server_alive(
    launch_server: ServerFactory, tmp_path: Path
) -> None:
    server = launch_server(tmp_path / "data", env={"QORTEX_SHUTDOWN_GRACE_SECONDS": "1"})
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as stalled:
        stalled.sendall(
            b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"source": '
        )
        time.sleep(0.5)
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=15)
        assert time.monotonic() - started < 10, "the server waited for the stalled request"


def test_a_request_still_running_when_the_shutdown_grace_ends_is_answered_503(
    launch_server: ServerFactory, tmp_path: Path
) -> None:
    """Not the server's bare 500 (which means a bug): a retryable problem, with the request id."""
    server = launch_server(tmp_path / "data", env={"QORTEX_SHUTDOWN_GRACE_SECONDS": "1"})
    # Another process holds the write lock, so the prediction waits (up to the 10 s busy timeout) to commit.
    blocker = sqlite3.connect(server.data_dir / "qortex.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{server.base_url}/v1/predictions",
                json={"source": "s", "values": series()},
                headers=server.headers,
                timeout=30,
            )
            time.sleep(1.0)
            server.process.terminate()
            answer = pending.result(timeout=30)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("/overloaded")
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["x-request-id"] in answer.json()["instance"]
