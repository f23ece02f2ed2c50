"""Domain exceptions, and their one mapping to RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://qortex.dev/problems/"


class QortexError(Exception):
    """Base of every error that reaches a client as a problem document."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class InvalidInput(QortexError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class MalformedBody(QortexError):
    status, slug, title = 400, "malformed-body", "Malformed request body"


class Unauthenticated(QortexError):
    status, slug, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str = "A valid credential is required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="qortex"'})


class Forbidden(QortexError):
    status, slug, title = 403, "forbidden", "Forbidden"
    # Whether whoever raised it recorded the refusal in the audit chain; the 403 handler records the rest.
    audited = False

    def recorded(self) -> Forbidden:
        self.audited = True
        return self


class IpNotAllowed(Forbidden):
    slug, title = "ip-not-allowed", "Address not allowed"
    audited = True  # its raisers record it with their own action and reason

    @classmethod
    def at(cls, address: str | None) -> IpNotAllowed:
        return cls(f"requests for this tenant are not accepted from {address or 'an unknown address'}")


class TenantSuspended(Forbidden):
    slug, title = "tenant-suspended", "Tenant suspended"
    audited = True  # the suspension is recorded once, by the operator's act, not at every refusal

    def __init__(self) -> None:
        super().__init__("this tenant is suspended; its operator can resume it")


class NotFound(QortexError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(QortexError):
    status, slug, title = 409, "conflict", "Conflict"


class IdempotencyKeyReused(QortexError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused with a different request"


class IdempotencyKeyInUse(QortexError):
    """409: a request with this Idempotency-Key is still running; a retry once it is done replays its answer."""

    status, slug, title = 409, "idempotency-key-in-use", "Idempotency key in use"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"a request with Idempotency-Key {key!r} is still being processed; retry after Retry-After seconds "
            "to get its answer",
            headers={"Retry-After": "1"},
        )


class PayloadTooLarge(QortexError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class Overloaded(QortexError):
    status, slug, title = 503, "overloaded", "Service overloaded"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class StorageUnavailable(QortexError):
    status, slug, title = 503, "storage-unavailable", "Storage unavailable"

    def __init__(self, *, outcome_unknown: bool = False) -> None:
        self.outcome_unknown = outcome_unknown
        detail = (
            # The connection died during COMMIT: the server may have committed before it went.
            "the connection to the database was lost while this request was being committed, so it may have been "
            "stored; retry after Retry-After seconds with the same Idempotency-Key"
            if outcome_unknown
            else "the database cannot serve this request now (locked, full or unreachable); nothing of it was "
            "stored, retry after Retry-After seconds"
        )
        super().__init__(detail, headers={"Retry-After": "5"})


def problem_body(
    *,
    type_: str,
    title: str,
    status: int,
    detail: str,
    instance: str | None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return body
