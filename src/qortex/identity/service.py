"""API keys: creation (secret shown once), listing, revocation, and authentication with a short cache."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit import service as audit
from qortex.audit.service import AuditRecord, Origin
from qortex.core import idempotency
from qortex.core.clock import utcnow
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Forbidden, NotFound, Unauthenticated
from qortex.core.idempotency import Answer, IdempotentRequest
from qortex.core.ids import new_id
from qortex.core.pagination import Page, page_of
from qortex.identity import repository
from qortex.identity.actors import commit_grant
from qortex.identity.models import ApiKey
from qortex.security import api_keys
from qortex.security.principal import Principal
from qortex.security.rbac import Role, can_grant

log = structlog.get_logger("qortex.identity")


@dataclass(frozen=True, slots=True)
class _CachedKey:
    secret_sha256: str
    principal: Principal
    cached_at: float


MISMATCH_LOG_SECONDS = 10.0


class ApiKeyCache:
    """Verified keys, kept for at most `ttl_seconds` so a revocation elsewhere is seen within that delay.

    A lookup in flight while a key is forgotten may have read its row before the revocation committed:
    `put` keeps out what was read before the last `forget` (the `generation` taken before the read).
    """

    def __init__(self, *, ttl_seconds: float, max_entries: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, _CachedKey] = OrderedDict()
        # Counts forgets; a read taken under an older generation may hold a key revoked since.
        self.generation = 0
        # key id -> (when a wrong secret for it was last logged, wrong secrets since then not logged)
        self._mismatches: dict[uuid.UUID, tuple[float, int]] = {}

    def mismatch_to_log(self, key_id: uuid.UUID) -> int | None:
        """Counts a wrong secret for a real key. Returns how many went unlogged before it when this one is to be
        logged (at most one line per key every MISMATCH_LOG_SECONDS, so guessing cannot flood the log)."""
        now = time.monotonic()
        last = self._mismatches.get(key_id)
        if last is not None and now - last[0] < MISMATCH_LOG_SECONDS:
            self._mismatches[key_id] = (last[0], last[1] + 1)
            return None
        if len(self._mismatches) >= self.max_entries:
            self._mismatches = {k: v for k, v in self._mismatches.items() if now - v[0] < MISMATCH_LOG_SECONDS}
        self._mismatches[key_id] = (now, 0)
        return last[1] if last is not None else 0

    def get(self, key_id: uuid.UUID) -> _CachedKey | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if time.monotonic() - entry.cached_at > self.ttl_seconds:
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return entry

    def put(self, key_id: uuid.UUID, entry: _CachedKey, *, generation: int | None = None) -> None:
        if generation is not None and generation != self.generation:
            return  # read before a revocation this process has since seen: not kept
        self._entries[key_id] = entry
        self._entries.move_to_end(key_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, *key_ids: uuid.UUID) -> None:
        if key_ids:
            self.generation += 1
        for key_id in key_ids:
            self._entries.pop(key_id, None)


def _public_fields(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": None,
    }


def _key_audit(
    action: str,
    key_id: uuid.UUID,
    actor: Principal | Literal["system"] | None,
    details: dict[str, Any] | None = None,
    origin: Origin | None = None,
) -> AuditRecord:
    # Without a principal the act is an operator's at the command line, or the system's own response.
    if actor == "system":
        return AuditRecord(action=action, target_type="api_key", target_id=str(key_id), details=details or {})
    origin = origin or Origin()
    return AuditRecord(
        action=action,
        actor_kind=actor.actor_kind if actor else "operator",
        actor_id=actor.actor_id if actor else None,
        target_type="api_key",
        target_id=str(key_id),
        request_id=origin.request_id,
        client_ip=origin.client_ip,
        details=details or {},
    )


async def revoke_keys_minted_for(
    *,
    session: AsyncSession,
    scope: TenantScope,
    user_id: uuid.UUID,
    at: datetime,
    actor: Principal | Literal["system"] | None,
    reason: str,
) -> list[uuid.UUID]:
    """Revokes the live keys minted for a person and records each revocation, in the caller's transaction.

    The caller forgets the returned ids in its key cache after the commit.
    """
    revoked = await repository.revoke_minted_for(session=session, scope=scope, user_id=user_id, at=at)
    if revoked:
        records = [_key_audit("api_key.revoke", key_id, actor, {"reason": reason}) for key_id in revoked]
        await audit.append(session=session, scope=scope, records=records)
    return revoked


def _new_key(
    scope: TenantScope, *, name: str, role: Role, expires_at: datetime | None, actor: Principal | None
) -> tuple[ApiKey, str]:
    """A new key row and its secret, which is never stored."""
    secret = api_keys.generate_secret()
    key = ApiKey(
        id=new_id(),
        tenant_id=scope.tenant_id,
        name=name,
        role=role.value,
        secret_sha256=api_keys.hash_secret(secret),
        expires_at=expires_at,
        created_at=utcnow(),
        # A key minted from a session acts for its person, so it cannot do what that session may not.
        minted_for_user_id=actor.person_id if actor is not None else None,
    )
    return key, secret


async def add_first_owner_key(*, session: AsyncSession, scope: TenantScope) -> str:
    """Adds a new tenant's first owner key in the tenant's own creating transaction; returns its plaintext."""
    key, secret = _new_key(scope, name="first owner key", role=Role.OWNER, expires_at=None, actor=None)
    session.add(key)
    await audit.append(
        session=session, scope=scope, records=[_key_audit("api_key.create", key.id, None, {"role": key.role})]
    )
    return api_keys.format_key(key.id, secret)


async def create_key(
    *,
    db: Database,
    scope: TenantScope,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
    request: IdempotentRequest | None = None,
    actor: Principal | None = None,
    origin: Origin | None = None,
) -> Answer:
    """Creates a key; the answer's `key` is its plaintext, never stored and never shown again.

    A replay of the same Idempotency-Key answers the key's public fields with `key` null.
    """
    earlier = await idempotency.replay(db=db, scope=scope, request=request)
    if earlier is not None:
        return earlier
    key, secret = _new_key(scope, name=name, role=role, expires_at=expires_at, actor=actor)
    stored = {**_public_fields(key), "key": None}
    record = _key_audit("api_key.create", key.id, actor, details={"role": role.value}, origin=origin)

    earlier = await commit_grant(
        db=db, scope=scope, request=request, rows=[key], stored_body=stored, actor=actor, record=record
    )
    return earlier or Answer({**stored, "key": api_keys.format_key(key.id, secret)}, replayed=False)


async def list_keys(
    *, db: Database, scope: TenantScope, include_revoked: bool, limit: int, after: uuid.UUID | None
) -> Page[ApiKey]:
    async with db.tenant_session(scope) as session:
        rows = await repository.list_keys(
            session=session, scope=scope, include_revoked=include_revoked, limit=limit + 1, after=after
        )
    return page_of(rows, limit=limit)


async def get_key(*, db: Database, scope: TenantScope, key_id: uuid.UUID) -> ApiKey:
    async with db.tenant_session(scope) as session:
        key = await repository.get(session=session, scope=scope, key_id=key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    return key


async def revoke_key(
    *,
    db: Database,
    scope: TenantScope,
    key_id: uuid.UUID,
    cache: ApiKeyCache | None,
    actor: Principal | None = None,
    origin: Origin | None = None,
) -> bool:
    """Revokes a key; returns False, recording nothing, when it was already revoked."""
    async with db.tenant_session(scope, write=True) as session:
        # Locked, so that of two revocations at once the second sees the first and records nothing.
        key = await repository.get(session=session, scope=scope, key_id=key_id, for_update=True)
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        # Revoking is held to the rule of granting: an admin cannot cut off an owner's keys.
        if actor is not None and not can_grant(actor.role, Role(key.role)):
            raise Forbidden(f"role {actor.role.value!r} may not revoke keys with role {key.role!r}")
        newly_revoked = key.revoked_at is None
        if newly_revoked:
            key.revoked_at = utcnow()
            await audit.append(
                session=session, scope=scope, records=[_key_audit("api_key.revoke", key_id, actor, origin=origin)]
            )
    # Even when it was already revoked, by another process that this one's cache has not heard from yet.
    if cache is not None:
        cache.forget(key_id)
    return newly_revoked


async def authenticate(*, db: Database, cache: ApiKeyCache, token: str) -> Principal:
    """Resolves a presented API key to its principal; any failure is the same 401."""
    parsed = api_keys.parse_key(token)
    if parsed is None:
        raise Unauthenticated()
    entry = cache.get(parsed.key_id)
    if entry is None:
        # Taken before the read: a revocation committed meanwhile keeps the row out of the cache, and the
        # entry's age counts from before the read, so no process serves a revoked key beyond the TTL.
        generation, read_at = cache.generation, time.monotonic()
        async with db.system_session() as session:
            key = await repository.find_for_authentication(session=session, key_id=parsed.key_id)
        if key is None or key.revoked_at is not None:
            raise Unauthenticated()
        entry = _CachedKey(
            secret_sha256=key.secret_sha256,
            principal=Principal(
                tenant_id=key.tenant_id,
                role=Role(key.role),
                credential_id=key.id,
                credential_kind="api_key",
                minted_for_user_id=key.minted_for_user_id,
                expires_at=key.expires_at,
            ),
            cached_at=read_at,
        )
        cache.put(parsed.key_id, entry, generation=generation)
    if not api_keys.secret_matches(parsed.secret, entry.secret_sha256):
        # A real key id with a wrong secret is someone who saw the id (in a log, a listing) guessing: worth
        # a line for the operator, not a database write per attempt. Neither secret is logged.
        unlogged = cache.mismatch_to_log(parsed.key_id)
        if unlogged is not None:
            log.warning(
                "api_key_secret_mismatch",
                key_id=str(parsed.key_id),
                tenant_id=str(entry.principal.tenant_id),
                unlogged_before=unlogged,
            )
        raise Unauthenticated()
    expires_at = entry.principal.expires_at
    if expires_at is not None and expires_at <= utcnow():
        raise Unauthenticated()
    return entry.principal
