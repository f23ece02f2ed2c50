"""What the OpenAPI document states beyond what FastAPI reads off a route: each error status the route can answer,
as the RFC 9457 problem it is, and the response headers clients act on (request id, limits, retries, replays)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from qortex.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from qortex.web.problems import PROBLEM_CONTENT, PROBLEM_SCHEMA_NAME, ProblemDetails


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_SECONDS = {"type": "integer", "minimum": 0}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": _header("The request's id: the `instance` of a problem, and in every log line of the request"),
    "RateLimit-Limit": _header("Requests the tenant may make in the window of `RateLimit-Policy`", _SECONDS),
    "RateLimit-Remaining": _header("Requests left in that window", _SECONDS),
    "RateLimit-Reset": _header("Seconds until that window frees up", _SECONDS),
    "RateLimit-Policy": _header("The limit and its window in seconds, e.g. `600;w=60`"),
    "Retry-After": _header("Seconds to wait before retrying", _SECONDS),
    "WWW-Authenticate": _header('How to authenticate: `Bearer realm="qortex"`'),
    "Accept-Encoding": _header("`identity`: bodies are taken uncompressed only"),
    "Location": _header("The path that reads the created resource back"),
    "Idempotent-Replayed": _header(
        "`true` when this is the stored answer to an earlier request with the same Idempotency-Key",
        {"type": "string", "enum": ["true"]},
    ),
}
# Checked before the route by the request policy, so no route declares them; required only by tenants that
# require signed requests (docs/request-security.md), so optional here.
SIGNATURE_PARAMETERS = [
    {
        "name": TIMESTAMP_HEADER,
        "in": "header",
        "required": False,
        "description": "Unix seconds at signing; required, with the signature, by tenants that require signed requests",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": SIGNATURE_HEADER,
        "in": "header",
        "required": False,
        "description": "`v1=` and the hex HMAC-SHA256 of the canonical request under the tenant's signing secret",
        "schema": {"type": "string", "pattern": "^v1=[0-9a-f]{64}$"},
    },
]
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")

# Each error status a route may answer: what it means (the Errors section of docs/api.md has every type) and the
# headers that come with it.
PROBLEM_STATUSES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("The body is not JSON, or an object in it repeats a key (`malformed-body`)", ()),
    401: (
        "No valid credential (`unauthenticated`), or a request signature the tenant requires is missing or wrong "
        "(`signature-*`)",
        ("WWW-Authenticate",),
    ),
    403: (
        "The role lacks the route's permission or may not grant the role asked for (`forbidden`), the client "
        "address is outside the tenant's allow-list (`ip-not-allowed`), or the tenant is suspended "
        "(`tenant-suspended`)",
        (),
    ),
    404: ("No such resource in the caller's tenant (`not-found`)", ()),
    409: (
        "A request with this Idempotency-Key is still being made (`idempotency-key-in-use`), or a unique value "
        "is taken (`conflict`)",
        ("Retry-After",),
    ),
    413: ("The body is larger than the server takes (`payload-too-large`)", ()),
    415: ("The body is not declared JSON, or is declared compressed (`unsupported-media-type`)", ("Accept-Encoding",)),
    422: (
        "A field, header or query parameter is missing, invalid, repeated or unknown (`invalid-input`), or an "
        "Idempotency-Key is reused with another request (`idempotency-key-reused`)",
        (),
    ),
    429: ("A limit is used up (`rate-limited`); retry after `Retry-After` seconds", ("Retry-After",)),
    503: (
        "The server cannot serve the request now (`overloaded`, `storage-unavailable`, `replay-check-unavailable`); "
        "retry after `Retry-After` seconds",
        ("Retry-After",),
    ),
    507: ("The tenant's stored data fills its quota (`storage-quota-exceeded`); waiting does not help", ()),
}


def _header_refs(names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses, each an RFC 9457 problem with the headers it carries."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = PROBLEM_STATUSES[status]
        responses[status] = {
            "description": description,
            "content": PROBLEM_CONTENT,
            "headers": _header_refs(headers),
        }
    return responses


def _reads_back(path: str, paths: dict[str, Any]) -> bool:
    """Whether what a POST to `path` creates can be read back (a GET of `path/{id}`), so its 201 names it in
    `Location`; a new signing secret, shown once, cannot."""
    return any(other.startswith(f"{path}/{{") and "get" in methods for other, methods in paths.items())


def _answers(path: str, operation: dict[str, Any], *, located: bool) -> dict[str, Any]:
    """Every answer of one operation: what its credential, body, parameters and storage can refuse, what it
    declares itself, and on each the headers that come with it."""
    authenticated = bool(operation.get("security"))
    parameters = operation.get("parameters", [])
    statuses: set[int] = set()
    if path.startswith("/v1/"):  # every API route refuses a bad query string and can find its storage down
        statuses |= {422, 503}
    if authenticated:
        statuses |= {401, 403, 429}
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if any(p["in"] == "path" for p in parameters):
        statuses |= {404, 422}
    declared: dict[str, Any] = {
        **{str(status): response for status, response in problem_responses(*statuses).items()},
        **operation["responses"],
    }
    idempotent = any(p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in parameters)
    answers: dict[str, Any] = {}
    for status in sorted(declared, key=lambda s: (s == "default", s)):
        headers = ["X-Request-ID"]
        if authenticated and status != "401":  # a request is counted once its credential is known
            headers += RATE_LIMIT_HEADERS
        if idempotent and status.startswith("2"):
            headers.append("Idempotent-Replayed")
        if status == "201" and located:
            headers.append("Location")
        response = declared[status]
        answers[status] = {**response, "headers": {**response.get("headers", {}), **_header_refs(headers)}}
    return answers


def document_answers(app: FastAPI) -> None:
    """Makes the app's OpenAPI document declare, on every operation, each status it can answer and the headers
    that come with each answer (FastAPI documents only the success and what routes declare themselves)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # which stores it as app.openapi_schema, so this runs once
        components = document.setdefault("components", {})
        components.setdefault("schemas", {})[PROBLEM_SCHEMA_NAME] = ProblemDetails.model_json_schema()
        components["headers"] = HEADERS
        for path, operations in document["paths"].items():
            for operation in operations.values():
                operation["responses"] = _answers(path, operation, located=_reads_back(path, document["paths"]))
                if operation.get("security"):
                    operation.setdefault("parameters", []).extend(SIGNATURE_PARAMETERS)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
