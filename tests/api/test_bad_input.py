"""Bad input is a clear 4xx problem naming what is wrong, never a 500 and never a silent change."""

from __future__ import annotations

import gzip

import httpx
import pytest
import structlog
from fastapi import FastAPI
from starlette.types import Message, Scope

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
        ({"source": "   ", "values": [1.0] * 8}, ["body", "source"]),
        ({"source": "\ufeff", "values": [1.0] * 8}, ["body", "source"]),
        ({"source": "s", "values": [1.0] * 8, "subject_ref": " \u00ad "}, ["body", "subject_ref"]),
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


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/tenant", "GET, HEAD, PATCH"),
        ("DELETE", "/v1/predictions", "GET, HEAD, POST"),
        # Not read as a prediction id: the path is the batch route's.
        ("GET", "/v1/predictions/batch", "POST"),
        ("PUT", "/v1/api-keys", "GET, HEAD, POST"),
        ("HEAD", "/v1/auth/login", "POST"),
    ],
)
async def test_a_wrong_method_is_told_every_method_the_path_serves(
    client: httpx.AsyncClient, acme: TenantCredentials, method: str, path: str, allowed: str
) -> None:
    """Starlette's Allow names only the first route that matched the path (RFC 9110 wants them all)."""
    refused = await client.request(method, path, headers=acme.headers)
    assert refused.status_code == 405
    assert refused.headers["allow"] == allowed


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


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/predictions", "direction=up&direction=down", "direction"),
        ("/v1/predictions", "source=a&limit=2&source=b", "source"),
        ("/v1/predictions", "limit=1&limit=500", "limit"),
        ("/v1/models", "cursor=AAAAAAAAAAAAAAAAAAAAAA&cursor=AAAAAAAAAAAAAAAAAAAAAQ", "cursor"),
        ("/v1/api-keys", "include_revoked=false&include_revoked=true", "include_revoked"),
    ],
)
async def test_a_repeated_query_parameter_is_refused_not_resolved(
    client: httpx.AsyncClient, acme: TenantCredentials, path: str, query: str, name: str
) -> None:
    """As with a body's duplicate keys, which copy wins depends on who reads it: neither is taken."""
    body = problem(await client.get(f"{path}?{query}", headers=acme.headers), 422)
    assert body["errors"] == [{"loc": ["query", name], "msg": "given more than once", "type": "repeated"}]


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/audit/events", "outcome=failure", "outcome"),
        ("/v1/audit/events", "action=auth.login&actor_id=x", "actor_id"),
        ("/v1/users", "role=viewer", "role"),
        ("/v1/api-keys", "include_inactive=true", "include_inactive"),
        ("/v1/predictions", "Direction=up", "Direction"),
        ("/v1/models", "limit=5&name=default", "name"),
        ("/v1/tenant/usage", "plan=free", "plan"),
    ],
)
async def test_an_unknown_query_parameter_is_refused_not_ignored(
    client: httpx.AsyncClient, acme: TenantCredentials, path: str, query: str, name: str
) -> None:
    """A filter the route does not have (or a known one misspelt) would be dropped, and the answer would list
    everything while looking like what was asked for: refused like an unknown field of a body."""
    body = problem(await client.get(f"{path}?{query}", headers=acme.headers), 422)
    assert body["errors"] == [{"loc": ["query", name], "msg": "unknown query parameter", "type": "unknown"}]
    assert (await client.get(path, headers=acme.headers)).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        '{"source": "a", "source": "b", "values": [1, 2, 3, 4, 5, 6, 7, 8]}',
        '{"source": "s", "values": [1, 2, 3, 4, 5, 6, 7, 8], "horizon": 1, "horizon": 1}',
    ],
)
async def test_duplicate_keys_are_refused_not_resolved(
    client: httpx.AsyncClient, acme: TenantCredentials, raw: str
) -> None:
    headers = {**acme.headers, "Content-Type": "application/json"}
    body = problem(await client.post("/v1/predictions", content=raw, headers=headers), 400)
    assert body["type"] == "https://qortex.dev/problems/malformed-body"
    assert "duplicate key" in str(body["detail"])
    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert listed.json()["items"] == []


async def test_a_duplicate_key_in_a_nested_object_is_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    raw = '{"items": [{"source": "a", "values": [1, 2, 3, 4, 5, 6, 7, 8], "values": [8, 7, 6, 5, 4, 3, 2, 1]}]}'
    headers = {**acme.headers, "Content-Type": "application/json"}
    problem(await client.post("/v1/predictions/batch", content=raw, headers=headers), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", None])
async def test_a_body_not_declared_as_json_is_415(
    client: httpx.AsyncClient, acme: TenantCredentials, content_type: str | None
) -> None:
    request = client.build_request("POST", "/v1/predictions", content=VALID, headers=acme.headers)
    assert "content-type" not in request.headers
    if content_type is not None:
        request.headers["content-type"] = content_type
    body = problem(await client.send(request), 415)
    assert body["type"] == "https://qortex.dev/problems/unsupported-media-type"


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate", "GZIP", "identity, gzip", "identity,gzip"])
async def test_a_body_with_a_content_coding_is_415_not_read_as_plain_json(
    client: httpx.AsyncClient, acme: TenantCredentials, coding: str
) -> None:
    """Compressed bodies are not decoded here, so one declared encoded is refused, never read as if it were not."""
    headers = {**acme.headers, "Content-Type": "application/json", "Content-Encoding": coding}
    refused = await client.post("/v1/predictions", content=VALID, headers=headers)
    body = problem(refused, 415)
    assert body["type"] == "https://qortex.dev/problems/unsupported-media-type"
    assert "Content-Encoding" in str(body["detail"])
    assert refused.headers["accept-encoding"] == "identity"
    assert (await client.get("/v1/predictions", headers=acme.headers)).json()["items"] == []


async def test_a_compressed_body_is_told_the_coding_is_unsupported(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = problem(await client.post("/v1/predictions", content=gzip.compress(VALID.encode()), headers=headers), 415)
    assert "gzip" in str(body["detail"])


async def test_the_identity_coding_is_accepted(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    headers = {**acme.headers, "Content-Type": "application/json", "Content-Encoding": "identity"}
    assert (await client.post("/v1/predictions", content=VALID, headers=headers)).status_code == 201


async def test_json_media_types_with_parameters_are_accepted(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    for content_type in ("application/json; charset=utf-8", "application/problem+json"):
        headers = {**acme.headers, "Content-Type": content_type}
        assert (await client.post("/v1/predictions", content=VALID, headers=headers)).status_code == 201


async def test_a_trailing_slash_is_404_not_a_redirect(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    answer = await client.post("/v1/predictions/", content=VALID, headers={**acme.headers, "Host": "evil.example"})
    problem(answer, 404)
    assert "location" not in answer.headers


async def test_head_answers_wherever_get_does_without_a_body(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    for path in ("/health/live", "/v1/predictions", "/v1/models"):
        got = await client.get(path, headers=acme.headers)
        head = await client.head(path, headers=acme.headers)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert "x-request-id" in head.headers
    refused = await client.head("/v1/auth/login")
    assert refused.status_code == 405
    assert refused.content == b""


@pytest.mark.parametrize("offered", ["abc\n", "abc\r", " abc", "a" * 129])
async def test_a_request_id_outside_its_alphabet_is_replaced(client: httpx.AsyncClient, offered: str) -> None:
    # httpx refuses to send a newline in a header, so the header is set on the scope-level request.
    request = client.build_request("GET", "/health/live")
    request.headers["x-request-id"] = "placeholder"
    request.headers._list = [  # type: ignore[attr-defined]
        (raw, lower, offered.encode() if lower == b"x-request-id" else value)
        for raw, lower, value in request.headers._list  # type: ignore[attr-defined]
    ]
    answered = (await client.send(request)).headers["x-request-id"]
    assert answered != offered
    assert len(answered) == 32


@pytest.mark.parametrize(
    "text",
    [
        *("a\u0085b", "\u202eabc", "a\u2028b", "a\u2029b", "\u2066x\u2069", "a\u200fb", "a\x9bb", "a\u061cb"),
        # At either end too: surrounding spaces are stripped, these are refused.
        *("ci\u0085", "\u2029ci"),
    ],
)
async def test_c1_line_separators_and_bidi_controls_are_refused(
    client: httpx.AsyncClient, acme: TenantCredentials, text: str
) -> None:
    refused = problem(
        await client.post("/v1/predictions", json={"source": text, "values": [1.0] * 8}, headers=acme.headers), 422
    )
    assert refused["errors"][0]["loc"] == ["body", "source"]  # type: ignore[index]
    problem(await client.post("/v1/api-keys", json={"name": text, "role": "viewer"}, headers=acme.headers), 422)


@pytest.mark.parametrize("query", ["source=caf%E9", "source=%ED%A0%80", "source=%FF&limit=1"])
async def test_a_query_value_that_is_not_utf_8_is_refused_not_searched_for_as_replacement_characters(
    client: httpx.AsyncClient, acme: TenantCredentials, query: str
) -> None:
    """Decoded leniently, `caf%E9` (café in Latin-1) lists the predictions of "caf\ufffd": an empty page that reads as
    "none from café"."""
    await client.post("/v1/predictions", json={"source": "caf\ufffd", "values": [1.0] * 8}, headers=acme.headers)
    refused = problem(await client.get(f"/v1/predictions?{query}", headers=acme.headers), 422)
    assert refused["errors"] == [{"loc": ["query"], "msg": "not percent-encoded UTF-8", "type": "encoding"}]
    assert (await client.get("/v1/predictions?source=caf%C3%A9", headers=acme.headers)).json()["items"] == []


async def test_emoji_joiners_and_accents_are_kept(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    source = "é 😀 👨\u200d👩\u200d👧 نیم\u200cفاصله"
    made = await client.post("/v1/predictions", json={"source": source, "values": [1.0] * 8}, headers=acme.headers)
    assert made.status_code == 201
    assert made.json()["source"] == source


@pytest.mark.parametrize(
    "key",
    [
        {"name": "   ", "role": "viewer"},
        {"name": "k", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"},
        {"name": "k", "role": "viewer", "expires_at": 1900000000},
        {"name": "k", "role": "viewer", "expires_at": "1900000000"},
    ],
)
async def test_blank_names_past_expiries_and_numeric_dates_make_no_key(
    client: httpx.AsyncClient, acme: TenantCredentials, key: dict[str, object]
) -> None:
    problem(await client.post("/v1/api-keys", json=key, headers=acme.headers), 422)


async def test_api_key_names_are_stripped(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    made = await client.post("/v1/api-keys", json={"name": "  ci  ", "role": "viewer"}, headers=acme.headers)
    assert made.status_code == 201
    assert made.json()["name"] == "ci"


@pytest.mark.parametrize("instant", ["0", "-1", "1700000000000", "1.5e9"])
async def test_date_filters_take_iso_8601_not_numbers(
    client: httpx.AsyncClient, acme: TenantCredentials, instant: str
) -> None:
    answer = problem(await client.get("/v1/predictions", params={"created_after": instant}, headers=acme.headers), 422)
    assert "ISO 8601" in str(answer["errors"])


async def test_a_model_reference_with_an_empty_version_is_not_found(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    body = {"source": "s", "values": [1.0] * 8, "model": "default@"}
    problem(await client.post("/v1/predictions", json=body, headers=acme.headers), 404)


@pytest.mark.parametrize("declared", ["-1", "+5", "1_0", " 10", "0x10", "٣"])
async def test_a_content_length_that_is_not_plain_digits_is_400(
    client: httpx.AsyncClient, acme: TenantCredentials, declared: str
) -> None:
    request = client.build_request("POST", "/v1/predictions", content=VALID, headers=acme.headers)
    request.headers._list = [  # type: ignore[attr-defined]
        (raw, lower, declared.encode() if lower == b"content-length" else value)
        for raw, lower, value in request.headers._list  # type: ignore[attr-defined]
    ]
    body = problem(await client.send(request), 400)
    assert "Content-Length" in str(body["detail"])


async def test_json_nested_to_the_parsers_limit_is_a_malformed_body(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    raw = '{"source": "s", "values": ' + "[" * 1010 + "]" * 1010 + "}"
    headers = {**acme.headers, "Content-Type": "application/json"}
    body = problem(await client.post("/v1/predictions", content=raw, headers=headers), 400)
    assert body["type"] == "https://qortex.dev/problems/malformed-body"


async def test_a_content_length_of_thousands_of_digits_is_413_not_500(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    request = client.build_request("POST", "/v1/predictions", content=VALID, headers=acme.headers)
    request.headers._list = [  # type: ignore[attr-defined]
        (raw, lower, b"9" * 5000 if lower == b"content-length" else value)
        for raw, lower, value in request.headers._list  # type: ignore[attr-defined]
    ]
    problem(await client.send(request), 413)


@pytest.mark.parametrize("content_type", [None, "application/json"])
async def test_a_client_that_disconnects_before_its_body_ends_is_no_server_error(
    app: FastAPI, acme: TenantCredentials, content_type: str | None
) -> None:
    """A client gone mid-body is not a bug of the server: no 500, no `unhandled_error` in the log."""
    messages: list[Message] = [{"type": "http.request", "body": b'{"source": "s"', "more_body": True}]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"host", b"qortex.test"), (b"authorization", acme.headers["Authorization"].encode())]
    headers += [(b"content-length", b"100")] + ([(b"content-type", content_type.encode())] if content_type else [])
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predictions",
        "raw_path": b"/v1/predictions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("qortex.test", 80),
    }
    with structlog.testing.capture_logs() as logged:
        await app(scope, receive, send)
    assert [entry["event"] for entry in logged if entry["log_level"] == "error"] == []
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400
