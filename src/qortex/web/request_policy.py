"""The tenant's request policy, checked right after authentication: the IP allow-list, then the signature.

Refusals are audited (through the group-committing writer) before the problem is answered, so a
tenant can see who tried to reach it from where; a refusal repeated within the audit interval is
counted into the next recorded event instead of being written on its own.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import structlog
from starlette.requests import Request

from qortex.audit.service import AuditRecord, AuditWriter
from qortex.core.errors import IpNotAllowed, TenantSuspended, Unauthenticated
from qortex.security import signing
from qortex.security.allowlist import contains
from qortex.security.principal import Principal
from qortex.tenants.policy import TenantPolicyCache
from qortex.web.client_ip import client_ip
from qortex.web.middleware import request_method
from qortex.web.problems import request_id_of

log = structlog.get_logger("qortex.web")


class RequestPolicy:
    """Enforces each tenant's allow-list and signing requirement; refusals are audited, throttled per cause."""

    def __init__(
        self,
        *,
        policies: TenantPolicyCache,
        nonces: signing.NonceStore,
        audit: AuditWriter,
        audit_interval_seconds: float = 10.0,
    ) -> None:
        self.policies = policies
        self.nonces = nonces
        self._audit = audit
        self._audit_interval = audit_interval_seconds
        # (credential, reason) -> (when last recorded, refusals since then that were not recorded)
        self._recorded: dict[tuple[uuid.UUID, str], tuple[float, int]] = {}

    async def enforce(self, request: Request, principal: Principal) -> None:
        """Raises `IpNotAllowed` (403) or a `SignatureRejected` (401) when the request breaks its tenant's policy."""
        policy = await self.policies.get(principal.scope)
        if not policy.found:
            raise Unauthenticated()
        if not policy.active:
            raise TenantSuspended()
        ip = client_ip(request)
        if policy.allowed_networks and not contains(policy.allowed_networks, ip):
            await self._refused(request, principal, ip, action="request.ip_denied", reason=IpNotAllowed.slug)
            raise IpNotAllowed.at(ip)
        if not policy.require_signed_requests:
            return
        try:
            if policy.signing_secret is None:
                raise signing.SignatureMismatch("this tenant requires signed requests but has no signing secret yet")
            verified = signing.verify(
                secret=policy.signing_secret,
                method=request_method(request.scope),
                target=signing.request_target(
                    request.scope.get("raw_path") or request.url.path, request.scope.get("query_string", b"")
                ),
                body=await request.body(),
                timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
                signature=request.headers.get(signing.SIGNATURE_HEADER),
                now=time.time(),
            )
            seen = hashlib.sha256(verified.signature.encode()).hexdigest()
            if not await self.nonces.claim(principal.scope, seen, verified.nonce_ttl_seconds):
                raise signing.SignatureReplayed("this signature was already used; sign each request afresh")
        except signing.SignatureRejected as rejected:
            await self._refused(request, principal, ip, action="request.signature_rejected", reason=rejected.slug)
            raise

    async def close(self) -> None:
        await self.nonces.close()

    async def _refused(
        self, request: Request, principal: Principal, ip: str | None, *, action: str, reason: str
    ) -> None:
        # A client retrying in a loop must not turn each refusal into a database write: one event per
        # credential and cause per interval, counting the ones in between.
        key = (principal.credential_id, reason)
        now = time.monotonic()
        last = self._recorded.get(key)
        if last is not None and now - last[0] < self._audit_interval:
            self._recorded[key] = (last[0], last[1] + 1)
            return
        self._recorded[key] = (now, 0)
        if len(self._recorded) > 10_000:
            self._recorded = {k: v for k, v in self._recorded.items() if now - v[0] < self._audit_interval}
        record = AuditRecord(
            action=action,
            outcome="failure",
            actor_kind=principal.actor_kind,
            actor_id=principal.actor_id,
            request_id=request_id_of(request),
            client_ip=ip,
            details={
                "reason": reason,
                "method": request_method(request.scope),
                "path": request.url.path,
                "unrecorded_before": last[1] if last is not None else 0,
            },
        )
        await self._audit.write_refusal(principal.scope, record)
