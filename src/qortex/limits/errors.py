"""Refusals for a tenant over one of its limits; the problem handlers turn them into responses."""

from __future__ import annotations

from qortex.core.errors import QortexError


class RateLimited(QortexError):
    """429: a request or prediction limit is used up; `Retry-After` says when to try again."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, limit: str, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})
        self.limit = limit


class StorageQuotaExceeded(QortexError):
    """507: the tenant's stored data fills its quota; waiting does not help, deleting data or a larger plan does."""

    status, slug, title = 507, "storage-quota-exceeded", "Storage quota exceeded"
