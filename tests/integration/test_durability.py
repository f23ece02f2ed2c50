"""A prediction whose 201 reached the client survives a SIGKILL of the server in the middle of traffic.

A SIGKILL leaves the operating system's page cache intact, so this proves the answer is sent only after
the commit (and that a restart recovers the SQLite WAL or PostgreSQL state); it is not a power-loss test.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import ServerFactory

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

CLIENTS = 8
KILL_AFTER_CONFIRMED = 150
MAX_SECONDS_OF_TRAFFIC = 30.0


@dataclass
class Traffic:
    confirmed: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    in_flight_at_kill: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)


async def _client(http: httpx.AsyncClient, number: int, traffic: Traffic) -> None:
    """Posts predictions until the connection dies; records every 201 it received."""
    rng = np.random.default_rng(number)
    while True:
        values = [float(v) for v in 100 + np.cumsum(rng.normal(size=32))]
        traffic.in_flight += 1
        try:
            response = await http.post("/v1/predictions", json={"source": f"client-{number}", "values": values})
        except httpx.TransportError:
            return
        finally:
            traffic.in_flight -= 1
        if response.status_code in (429, 503):
            # Back-pressure (a plan's limits, a full engine queue) is an answer, not a failure: retry as told.
            await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 1.0))
            continue
        assert response.status_code == 201, response.text
        body = response.json()
        traffic.confirmed[body["id"]] = body
        if len(traffic.confirmed) >= KILL_AFTER_CONFIRMED:
            traffic.enough.set()


async def _traffic_until_killed(base_url: str, headers: dict[str, str], kill: Callable[[], None]) -> Traffic:
    """Runs CLIENTS concurrent writers and kills the server while their requests are in flight."""
    traffic = Traffic()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as http:
        clients = [asyncio.create_task(_client(http, n, traffic)) for n in range(CLIENTS)]
        try:
            await asyncio.wait_for(traffic.enough.wait(), timeout=MAX_SECONDS_OF_TRAFFIC)
            traffic.in_flight_at_kill = traffic.in_flight
            kill()
            await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
        finally:
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
    return traffic


async def _fetch_all(base_url: str, headers: dict[str, str], ids: list[str]) -> dict[str, httpx.Response]:
    """Reads every id back with CLIENTS concurrent readers, retrying when told to back off."""
    gate = asyncio.Semaphore(CLIENTS)

    async def fetch(http: httpx.AsyncClient, prediction_id: str) -> httpx.Response:
        async with gate:
            while True:
                response = await http.get(f"/v1/predictions/{prediction_id}")
                if response.status_code not in (429, 503):
                    return response
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 1.0))

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        responses = await asyncio.wait_for(asyncio.gather(*(fetch(http, i) for i in ids)), timeout=60)
    return dict(zip(ids, responses, strict=True))


async def test_every_confirmed_prediction_survives_a_sigkill_mid_stream(
    launch_server: ServerFactory, storage_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before = await asyncio.to_thread(launch_server, data_dir, env=storage_env)
    headers = before.headers

    traffic = await _traffic_until_killed(before.base_url, headers, before.kill)
    confirmed = traffic.confirmed

    assert before.process.returncode == -signal.SIGKILL
    assert len(confirmed) >= KILL_AFTER_CONFIRMED
    assert traffic.in_flight_at_kill > 0, "the kill must land while requests are in flight"

    after = await asyncio.to_thread(launch_server, data_dir, env=storage_env)
    assert after.first_key is None, after.output
    fetched = await _fetch_all(after.base_url, headers, list(confirmed))
    lost = {i: r.status_code for i, r in fetched.items() if r.status_code != 200}
    assert not lost, f"{len(lost)} of {len(confirmed)} confirmed predictions are gone, e.g. {list(lost.items())[:3]}"
    changed = [i for i, r in fetched.items() if r.json() != confirmed[i]]
    assert not changed, f"{len(changed)} predictions read back differently, e.g. {changed[:3]}"
