"""Each tenant's request policy (allow-list, signing), cached briefly so the hot path makes no query.

A change is seen at once by the process that made it (it forgets its entry) and by every other
process within `ttl_seconds` (`QORTEX_TENANT_POLICY_CACHE_SECONDS`, default 5 s, at most 10 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from qortex.core.database import Database, TenantScope
from qortex.core.payload import PayloadContext, payload_codec
from qortex.security.allowlist import IPNetwork, parse_networks
from qortex.tenants import repository
from qortex.tenants.models import Tenant

SIGNING_SECRET_FIELD = "signing_secret"  # noqa: S105 - the field name bound into the payload context


def signing_secret_context(tenant_id: uuid.UUID) -> PayloadContext:
    return PayloadContext(tenant_id=tenant_id, table="tenants", row_id=tenant_id, field=SIGNING_SECRET_FIELD)


def decode_signing_secret(tenant: Tenant) -> str | None:
    if tenant.signing_secret_payload is None:
        return None
    return str(payload_codec().decode(tenant.signing_secret_payload, signing_secret_context(tenant.id)))


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """What every authenticated request of a tenant must satisfy; `found` is False for a vanished tenant,
    `active` False for a suspended one."""

    found: bool
    active: bool = True
    allowed_networks: tuple[IPNetwork, ...] = ()
    require_signed_requests: bool = False
    signing_secret: str | None = None

    @classmethod
    def of(cls, tenant: Tenant | None) -> TenantPolicy:
        if tenant is None:
            return cls(found=False)
        return cls(
            found=True,
            active=tenant.active,
            allowed_networks=parse_networks(tenant.ip_allowlist or []),
            require_signed_requests=tenant.require_signed_requests,
            signing_secret=decode_signing_secret(tenant),
        )


class TenantPolicyCache:
    """Policies by tenant, each kept at most `ttl_seconds`; concurrent misses for one tenant share one query."""

    def __init__(self, *, db: Database, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._db = db
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, TenantPolicy]] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Task[TenantPolicy]] = {}

    async def get(self, scope: TenantScope) -> TenantPolicy:
        tenant_id = scope.tenant_id
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] <= self.ttl_seconds:
            self._entries.move_to_end(tenant_id)
            return entry[1]
        loading = self._loading.get(tenant_id)
        if loading is None:
            # A task, so a caller that gives up (a client disconnecting) does not fail the others waiting.
            loading = asyncio.get_running_loop().create_task(self._load_and_keep(scope))
            loading.add_done_callback(_retrieve_exception)
            self._loading[tenant_id] = loading
        return await asyncio.shield(loading)

    def forget(self, tenant_id: uuid.UUID) -> None:
        """Drops the entry, and disowns a load in flight, which may have read the row before a change."""
        self._entries.pop(tenant_id, None)
        self._loading.pop(tenant_id, None)

    async def _load_and_keep(self, scope: TenantScope) -> TenantPolicy:
        this = asyncio.current_task()
        try:
            loaded_at = time.monotonic()
            async with self._db.tenant_session(scope) as session:
                policy = TenantPolicy.of(await repository.get_in_scope(session=session, scope=scope))
            if self._loading.get(scope.tenant_id) is this:
                self._entries[scope.tenant_id] = (loaded_at, policy)
                self._entries.move_to_end(scope.tenant_id)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return policy
        finally:
            if self._loading.get(scope.tenant_id) is this:
                del self._loading[scope.tenant_id]


def _retrieve_exception(task: asyncio.Task[TenantPolicy]) -> None:
    if not task.cancelled():
        task.exception()
