"""Bad input is a clear 4xx problem naming what is wrong, never a 500 and never a silent change."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TenantCredentials

VALID = '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, 8]}'


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    assert body["instance"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    "raw",
    [
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, NaN]}',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, Infinity]}',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, -Infinity]}',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, 1e400]}',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, 8]',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, 8,]}',
        "not json",
    ],
)
async def test_malformed_json_and_non_finite_tokens_are_refused(
    client: httpx.AsyncClient, acme: TenantCredentials, raw: str
) -> None:
    headers = {**acme.headers, "Content-Type": "application/json"}
    body = problem(await client.post("/v1/predictions", content=raw, headers=headers), 400)
    assert body["type"] == "https://qortex.dev/problems/malformed-body"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "s", "values": ["1", 2, 3, 4, 5, 6, 7, 8]}, ["body", "values", "0"]),
        ({"source": "s", "values": [True, 2, 3, 4, 5, 6, 7, 8]}, ["body", "values", "0"]),
        ({"source": "s", "values": [1, 2, 3]}, ["body", "values"]),
        ({"source": "s", "values": [1.0] * 4097}, ["body", "values"]),
        ({"source": "s", "values": "12345678"}, ["body", "values"]),
        ({"source": 7, "values": [1.0] * 8}, ["body", "source"]),
        ({"source": "", "values": [1.0] * 8}, ["body", "source"]),
        ({"values": [1.0] * 8}, ["body", "source"]),
        ({"source": "s", "values": [1.0] * 8, "horizon": "1"}, ["body", "horizon"]),
        ({"source": "s", "values": [1.0] * 8, "horizon": 0}, ["body", "horizon"]),
        ({"source": "s", "values": [1.0] * 8, "tenant_id": "other"}, ["body", "tenant_id"]),
        ({"source": "s\u0000", "values": [1.0] * 8}, ["body", "source"]),
        ({"source": "s", "values": [1.0] * 8, "subject_ref": "a\u0000b"}, ["body", "subject_ref"]),
        ({"source": "s", "values": [1.0] * 8, "model": "default\u0000"}, ["body", "model"]),
    ],
)
async def test_wrong_types_sizes_and_unknown_fields_name_the_field(
    client: httpx.AsyncClient, acme: TenantCredentials, body: dict[str, object], field: list[str]
) -> None:
    answer = problem(await client.post("/v1/predictions", json=body, headers=acme.headers), 422)
    assert field in [error["loc"] for error in answer["errors"]]  # type: ignore[union-attr]


async def test_a_body_declared_too_large_is_refused_before_it_is_read(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Content-Type": "application/json", "Content-Length": str(11 * 1024 * 1024)}
    body = problem(await client.post("/v1/predictions", content=VALID, headers=headers), 413)
    assert "limit" in str(body["detail"])


async def test_a_chunked_body_that_grows_too_large_is_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    async def chunks() -> object:
        yield b'{"source": "s", "values": ['
        for _ in range(1100):
            yield b"1.0, " * 2000
        yield b"1.0]}"

    headers = {**acme.headers, "Content-Type": "application/json"}
    problem(await client.post("/v1/predictions", content=chunks(), headers=headers), 413)  # type: ignore[arg-type]


async def test_a_bad_cursor_and_unknown_route_are_problems(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    problem(await client.get("/v1/predictions", params={"cursor": "%%%"}, headers=acme.headers), 422)
    problem(await client.get("/v1/predictions/not-a-uuid", headers=acme.headers), 422)
    problem(await client.get("/v1/nowhere", headers=acme.headers), 404)
    problem(await client.put("/v1/predictions", headers=acme.headers), 405)


async def test_a_constant_series_is_neutral(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    response = await client.post("/v1/predictions", json={"source": "s", "values": [5.0] * 32}, headers=acme.headers)
    assert response.status_code == 201
    made = response.json()
    assert (made["direction"], made["confidence"], made["probability_up"]) == ("neutral", 0.5, 0.5)
    assert "plateau" in [pattern["type"] for pattern in made["patterns"]]


async def test_control_characters_and_naive_dates_in_queries_are_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    problem(await client.get("/v1/predictions", params={"source": "a\x00"}, headers=acme.headers), 422)
    problem(
        await client.get("/v1/predictions", params={"created_after": "2024-01-01T00:00:00"}, headers=acme.headers), 422
    )
    for extreme in ("9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+05:00"):
        problem(await client.get("/v1/predictions", params={"created_before": extreme}, headers=acme.headers), 422)
    key = {"name": "k", "role": "viewer", "expires_at": "0001-01-01T00:00:00+05:00"}
    problem(await client.post("/v1/api-keys", json=key, headers=acme.headers), 422)
    # PostgreSQL text cannot hold NUL: without the check this was a 500 there (and stored on SQLite).
    for name in ("ci\x00key", "line\nbreak"):
        refused = problem(
            await client.post("/v1/api-keys", json={"name": name, "role": "viewer"}, headers=acme.headers), 422
        )
        assert refused["errors"][0]["loc"] == ["body", "name"]
