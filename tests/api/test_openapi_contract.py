"""The OpenAPI document against the server: every route's answers match what the document says of them.

Clients are generated from /openapi.json, so each answer below is checked against it: its status is documented,
its media type and body match the documented schema (no field left undocumented), and the headers clients act
on are declared.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import numpy as np
import pytest
from fastapi import FastAPI

from qortex.limits.service import set_tenant_limits
from qortex.security.rbac import Role
from qortex.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.api.people import PASSWORD, add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials, key_for

# Headers a client acts on: each one an answer carries must be declared on the documented response.
RELIED_ON_HEADERS = (
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
    "WWW-Authenticate",
    "Idempotent-Replayed",
    "Location",
    "Allow",
    "Accept-Encoding",
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the document does not depend on the database


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


def _closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others, so an undocumented field fails."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


class Contract:
    """Checks answers against the document and remembers which operations and statuses were seen."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = _closed(spec.get("components", {}))
        self.seen: set[tuple[str, str]] = set()
        self.statuses: dict[tuple[str, str], set[int]] = {}
        self.mismatches: list[str] = []

    def operation(self, method: str, template: str) -> dict[str, Any]:
        operations = self.spec["paths"].get(template)
        assert operations is not None, f"{template} is not in the document"
        assert method.lower() in operations, f"{method} {template} is not in the document"
        result: dict[str, Any] = operations[method.lower()]
        return result

    def check(self, method: str, template: str, answer: httpx.Response) -> httpx.Response:
        where = f"{method} {template} answered {answer.status_code}"
        responses = self.operation(method, template)["responses"]
        documented = responses.get(str(answer.status_code))
        if documented is None:
            # Only what no route answers on purpose (a bug, a method the path does not take) is left to `default`.
            if answer.status_code not in (405, 500) or "default" not in responses:
                self.mismatches.append(f"{where}: status not documented")
                return answer
            documented = responses["default"]
        self.seen.add((method, template))
        self.statuses.setdefault((method, template), set()).add(answer.status_code)
        declared = {name.lower() for name in documented.get("headers", {})}
        for name in RELIED_ON_HEADERS:
            if name.lower() in answer.headers and name.lower() not in declared:
                self.mismatches.append(f"{where}: header {name} not declared")
        # A client follows a declared Location to read what was made: one that never comes is a broken promise.
        if answer.status_code == 201 and "location" in declared and "location" not in answer.headers:
            self.mismatches.append(f"{where}: Location declared but not answered")
        content = documented.get("content")
        if answer.status_code == 204:
            if content or answer.content:
                self.mismatches.append(f"{where}: content documented or answered")
            return answer
        media_type = answer.headers["content-type"].split(";")[0]
        if media_type not in (content or {}):
            self.mismatches.append(f"{where}: {media_type} answered, documented {list(content or {})}")
            return answer
        schema = {**content[media_type]["schema"], "components": self.components}
        errors = [
            str(e)
            for e in jsonschema_rs.validator_for(_closed(schema), validate_formats=True).iter_errors(answer.json())
        ]
        if errors:
            self.mismatches.append(f"{where}: {errors}")
        return answer


@pytest.fixture
async def contract(client: httpx.AsyncClient) -> Contract:
    return Contract((await client.get("/openapi.json")).json())


def series(n: int = 16) -> list[float]:
    rng = np.random.default_rng(7)
    return [float(v) for v in 100 + np.cumsum(rng.normal(size=n))]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for template, methods in spec["paths"].items():
        for method in methods:
            yield method.upper(), template


async def test_every_answer_of_every_route_is_the_one_the_document_describes(
    client: httpx.AsyncClient, app: FastAPI, acme: TenantCredentials, contract: Contract
) -> None:
    c = contract
    db = app.state.services.db
    owner = acme.headers
    viewer = bearer(await key_for(db, acme.tenant, Role.VIEWER))
    auditor = bearer(await key_for(db, acme.tenant, Role.AUDITOR))
    nobody = {"Authorization": "Bearer qx_nothing"}
    missing = str(uuid.uuid4())

    async def call(method: str, template: str, path: str | None = None, **kwargs: Any) -> httpx.Response:
        return c.check(method, template, await client.request(method, path or template, **kwargs))

    # health
    await call("GET", "/health/live")
    await call("GET", "/health/ready")

    # predictions
    one = {"source": "cpu", "values": series()}
    made = await call("POST", "/v1/predictions", json=one, headers={**owner, "Idempotency-Key": "p1"})
    assert made.status_code == 201, made.text
    replayed = await call("POST", "/v1/predictions", json=one, headers={**owner, "Idempotency-Key": "p1"})
    assert replayed.headers["idempotent-replayed"] == "true"
    await call("POST", "/v1/predictions", json={**one, "source": "x"}, headers={**owner, "Idempotency-Key": "p1"})
    await call("POST", "/v1/predictions", json={"source": "s", "values": [1.0]}, headers=owner)
    await call("POST", "/v1/predictions", json={**one, "model": "nope"}, headers=owner)
    await call("POST", "/v1/predictions", content=b"{", headers={**owner, "Content-Type": "application/json"})
    await call("POST", "/v1/predictions", content=b"x", headers={**owner, "Content-Type": "text/plain"})
    await call("POST", "/v1/predictions", json=one, headers={**owner, "Content-Encoding": "gzip"})
    await call("POST", "/v1/predictions", json=one)
    await call("POST", "/v1/predictions", json=one, headers=nobody)
    await call("POST", "/v1/predictions", json=one, headers=viewer)
    await call("POST", "/v1/predictions", content=b"[" + b"1," * 6_000_000 + b"1]", headers=owner)
    batch = {"items": [one, {"source": "s"}, "nonsense", {**one, "model": "nope"}]}
    answered = await call("POST", "/v1/predictions/batch", json=batch, headers={**owner, "Idempotency-Key": "b1"})
    assert answered.status_code == 200, answered.text
    await call("POST", "/v1/predictions/batch", json=batch, headers={**owner, "Idempotency-Key": "b1"})
    await call("POST", "/v1/predictions/batch", json={"items": []}, headers=owner)
    await call("POST", "/v1/predictions/batch", json=batch, headers=viewer)
    prediction_id = made.json()["id"]
    await call("GET", "/v1/predictions/{prediction_id}", f"/v1/predictions/{prediction_id}", headers=owner)
    await call("GET", "/v1/predictions/{prediction_id}", f"/v1/predictions/{prediction_id}", headers=viewer)
    await call("GET", "/v1/predictions/{prediction_id}", f"/v1/predictions/{missing}", headers=owner)
    await call("GET", "/v1/predictions/{prediction_id}", "/v1/predictions/not-an-id", headers=owner)
    await call("GET", "/v1/predictions/{prediction_id}", f"/v1/predictions/{prediction_id}")
    await call("GET", "/v1/predictions", params={"limit": 1}, headers=owner)
    await call("GET", "/v1/predictions", params={"direction": "sideways"}, headers=owner)
    await call("GET", "/v1/predictions", params={"cursor": "!"}, headers=owner)
    await call("GET", "/v1/predictions", params={"unknown": "1"}, headers=owner)
    await call("GET", "/v1/predictions", headers=auditor)

    # models
    models = await call("GET", "/v1/models", headers=owner)
    model_id = models.json()["items"][0]["id"]
    await call("GET", "/v1/models/{model_id}", f"/v1/models/{model_id}", headers=owner)
    await call("GET", "/v1/models/{model_id}", f"/v1/models/{missing}", headers=owner)
    await call("GET", "/v1/models", headers=nobody)

    # api keys
    key = await call("POST", "/v1/api-keys", json={"name": "k", "role": "service"}, headers=owner)
    assert key.status_code == 201, key.text
    key_id = key.json()["id"]
    await call("POST", "/v1/api-keys", json={"name": "k", "role": "service"}, headers={**owner, "Idempotency-Key": "k"})
    await call("POST", "/v1/api-keys", json={"name": "k", "role": "service"}, headers={**owner, "Idempotency-Key": "k"})
    await call("POST", "/v1/api-keys", json={"name": "k", "role": "superuser"}, headers=owner)
    await call("POST", "/v1/api-keys", json={"name": "k", "role": "service"}, headers=viewer)
    await call("GET", "/v1/api-keys", params={"include_revoked": "true", "limit": 1}, headers=owner)
    await call("GET", "/v1/api-keys/{key_id}", f"/v1/api-keys/{key_id}", headers=owner)
    await call("GET", "/v1/api-keys/{key_id}", f"/v1/api-keys/{missing}", headers=owner)
    await call("DELETE", "/v1/api-keys/{key_id}", f"/v1/api-keys/{key_id}", headers=owner)
    await call("DELETE", "/v1/api-keys/{key_id}", f"/v1/api-keys/{missing}", headers=owner)

    # tenant and usage
    await call("GET", "/v1/tenant", headers=owner)
    await call("GET", "/v1/tenant", headers=viewer)
    await call("PATCH", "/v1/tenant", json={"require_signed_requests": False}, headers=owner)
    await call("PATCH", "/v1/tenant", json={"ip_allowlist": ["10.0.0.0/8"]}, headers=owner)
    await call("POST", "/v1/tenant/signing-secret", headers=owner)
    await call("GET", "/v1/tenant/usage", headers=owner)
    await call("GET", "/v1/tenant/usage", headers=viewer)

    # people and sessions
    await add_user(app, acme.tenant, "ada", Role.ANALYST)
    session = await login(client, "ada")
    c.check("POST", "/v1/auth/login", session)
    c.check("POST", "/v1/auth/login", await login(client, "ada", "wrong password!"))
    await call("POST", "/v1/auth/login", json={"username": "ada"})
    tokens = session.json()
    ada = bearer(tokens["access_token"])
    refreshed = await call("POST", "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ada = bearer(refreshed.json()["access_token"])
    await call("POST", "/v1/auth/refresh", json={"refresh_token": "nonsense"})
    await call("GET", "/v1/auth/me", headers=ada)
    await call("GET", "/v1/auth/me", headers=owner)
    await call("GET", "/v1/auth/me")
    await call("POST", "/v1/auth/logout", headers=owner)
    password = {"current_password": PASSWORD, "new_password": "short"}
    await call("POST", "/v1/auth/password", json=password, headers=ada)
    await call("POST", "/v1/auth/password", json={**password, "new_password": PASSWORD + "!"}, headers=ada)
    await add_user(app, acme.tenant, "bea", Role.ANALYST)
    bea = bearer((await login(client, "bea")).json()["access_token"])
    await call("POST", "/v1/auth/logout", headers=bea)

    person = {
        "username": "cyd",
        "email": "cyd@example.com",
        "display_name": "Cy",
        "password": PASSWORD,
        "role": "viewer",
    }
    created = await call("POST", "/v1/users", json=person, headers={**owner, "Idempotency-Key": "u"})
    assert created.status_code == 201, created.text
    await call("POST", "/v1/users", json=person, headers={**owner, "Idempotency-Key": "u"})
    await call("POST", "/v1/users", json={**person, "username": "dee"}, headers=owner)  # taken email
    await call("POST", "/v1/users", json={**person, "password": "short"}, headers=owner)
    user_id = created.json()["id"]
    await call("GET", "/v1/users", params={"include_inactive": "true"}, headers=owner)
    await call("GET", "/v1/users/{user_id}", f"/v1/users/{user_id}", headers=owner)
    await call("GET", "/v1/users/{user_id}", f"/v1/users/{missing}", headers=owner)
    await call("PATCH", "/v1/users/{user_id}", f"/v1/users/{user_id}", json={"display_name": "C"}, headers=owner)
    await call("PATCH", "/v1/users/{user_id}", f"/v1/users/{user_id}", json={"role": "owner"}, headers=viewer)
    await call("DELETE", "/v1/users/{user_id}", f"/v1/users/{user_id}", headers=owner)
    await call("DELETE", "/v1/users/{user_id}", f"/v1/users/{missing}", headers=owner)

    # audit
    await call("GET", "/v1/audit/events", params={"limit": 2}, headers=owner)
    await call("GET", "/v1/audit/events", params={"action": "BAD"}, headers=owner)
    await call("GET", "/v1/audit/verify", headers=auditor)
    await call("GET", "/v1/audit/verify", headers=viewer)

    # limits: the plan's per-minute budget used up
    await set_tenant_limits(db=db, scope=acme.tenant.scope, plan=None, overrides={"requests_per_minute": 1})
    app.state.services.limits.forget(acme.tenant.id)
    await call("GET", "/v1/models", headers=owner)
    await call("GET", "/v1/models", headers=owner)

    assert c.seen == set(operations(c.spec))
    assert not c.mismatches, "\n".join(c.mismatches)


PUBLIC_OPERATIONS = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
}


async def test_every_route_that_needs_a_credential_declares_the_bearer_scheme_and_no_other_does(
    client: httpx.AsyncClient, contract: Contract
) -> None:
    """A generated client sends the credential where the document says one is needed, and only there."""
    scheme = contract.spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, template in operations(contract.spec):
        security = contract.operation(method, template).get("security")
        path = template.replace("{", "").replace("}", "")  # any id: the credential is checked first
        answer = await client.request(method, path, json={} if method in ("POST", "PATCH") else None)
        if (method, template) in PUBLIC_OPERATIONS:
            assert security is None and answer.status_code != 401, (method, template, answer.text)
        else:
            assert security == [{"bearer": []}] and answer.status_code == 401, (method, template, answer.text)


def field_schema(contract: Contract, model: str, field: str) -> Any:
    return {**contract.components["schemas"][model]["properties"][field], "components": contract.components}


@pytest.mark.parametrize(
    ("path", "model", "body", "field", "value"),
    [
        ("/v1/users", "UserCreate", {"email": "x@example.com", "role": "viewer"}, "username", "ab"),
        ("/v1/users", "UserCreate", {"email": "x@example.com", "role": "viewer"}, "username", "-abc"),
        ("/v1/users", "UserCreate", {"email": "x@example.com", "role": "viewer"}, "username", "a b c"),
        ("/v1/users", "UserCreate", {"email": "x@example.com", "role": "viewer"}, "password", "too short"),
        ("/v1/users", "UserCreate", {"email": "x@example.com", "role": "viewer"}, "display_name", "Eve\u202e"),
        ("/v1/api-keys", "ApiKeyCreate", {"role": "viewer"}, "name", "nightly\njob"),
    ],
)
async def test_the_document_states_the_text_rules_the_server_enforces(
    client: httpx.AsyncClient,
    acme: TenantCredentials,
    contract: Contract,
    path: str,
    model: str,
    body: dict[str, Any],
    field: str,
    value: str,
) -> None:
    """A client validating against the document must not send what the server refuses, nor wait for the 422."""
    valid = {"username": "alice", "display_name": "Alice", "password": PASSWORD, "name": "nightly job"}
    sent = {
        **body,
        **{k: v for k, v in valid.items() if k in contract.spec["components"]["schemas"][model]["properties"]},
    }
    refused = await client.post(path, json={**sent, field: value}, headers=acme.headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", field], refused.text
    schema = field_schema(contract, model, field)
    assert not jsonschema_rs.validator_for(schema).is_valid(value), (model, field, value)
    assert jsonschema_rs.validator_for(schema).is_valid(sent[field])


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("Me", {"session_id", "user", "api_key"}),
        ("TokenPair", {"token_type"}),
        ("SigningSecretOut", {"algorithm", "signature_version"}),
        ("BatchItemOut", {"prediction", "problem"}),
        ("PatternOut", {"period"}),
        ("LimitUsage", {"window_seconds", "resets_at"}),
    ],
)
def test_fields_every_answer_carries_are_required_even_when_they_may_be_null(
    contract: Contract, model: str, fields: set[str]
) -> None:
    """A generated client types an optional field as possibly absent; these are always sent, null or not."""
    assert fields <= set(contract.components["schemas"][model]["required"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predictions", {"source": "s", "values": [float(v) for v in range(1, 33)]}),
        ("/v1/api-keys", {"name": "nightly job", "role": "viewer"}),
        (
            "/v1/users",
            {
                "username": "carol",
                "display_name": "Carol",
                "email": "carol@example.com",
                "password": PASSWORD,
                "role": "viewer",
            },
        ),
    ],
)
async def test_a_creation_says_where_the_created_resource_is_read_back_and_its_replay_says_the_same(
    client: httpx.AsyncClient, acme: TenantCredentials, path: str, body: dict[str, Any]
) -> None:
    headers = {**acme.headers, "Idempotency-Key": f"create-{path}"}
    created = await client.post(path, json=body, headers=headers)
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location == f"{path}/{created.json()['id']}"
    read = await client.get(location, headers=acme.headers)
    assert read.status_code == 200 and read.json()["id"] == created.json()["id"]
    replayed = await client.post(path, json=body, headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.headers["location"] == location


def test_operation_ids_are_the_handlers_names_and_tags_are_path_segments(contract: Contract) -> None:
    """Generated clients name their methods after operationIds and group them by tag; FastAPI's defaults
    (`create_prediction_v1_predictions_post`) repeat the path and change with it."""
    operation_ids = [op["operationId"] for ops in contract.spec["paths"].values() for op in ops.values()]
    assert len(set(operation_ids)) == len(operation_ids)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", op) and "_v1_" not in op for op in operation_ids), operation_ids
    tags = {tag for ops in contract.spec["paths"].values() for op in ops.values() for tag in op["tags"]}
    assert all(re.fullmatch(r"[a-z-]+", tag) for tag in tags), tags


def test_every_route_that_needs_a_credential_declares_the_request_signature_headers(contract: Contract) -> None:
    """A tenant may require signed requests (docs/request-security.md); a generated client must be able to send
    the two headers, and a tenant that does not require them must not be made to."""
    for method, template in operations(contract.spec):
        operation = contract.operation(method, template)
        headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
        signed = {name: headers.get(name) for name in (TIMESTAMP_HEADER, SIGNATURE_HEADER)}
        if operation.get("security"):
            assert all(p is not None and p["required"] is False for p in signed.values()), (method, template)
        else:
            assert all(p is None for p in signed.values()), (method, template)
