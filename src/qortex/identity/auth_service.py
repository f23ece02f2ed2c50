"""People's sessions: login, refresh-token rotation with reuse detection, logout, password change.

A login creates an `AuthSession` (the refresh token family) and answers a short-lived access JWT and
an opaque, single-use refresh token, stored as SHA-256. A refresh marks its token used and issues the
next one; presenting a used token again means it was copied, so the whole family ends ("refresh_reuse").
Ending a session is committed to the database and announced to `SessionRevocations`, which every
process consults, in memory, for every access token it accepts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis

from qortex.audit import service as audit
from qortex.audit.service import AuditRecord, AuditWriter, Origin
from qortex.core.clock import utcnow
from qortex.core.config import Settings
from qortex.core.database import Database, TenantScope
from qortex.core.errors import InvalidInput, IpNotAllowed, TenantSuspended, Unauthenticated
from qortex.core.ids import new_id
from qortex.identity import user_repository as repo
from qortex.identity.actors import confirm_actor, lock_people
from qortex.identity.models import AuthSession, RefreshToken, User
from qortex.identity.schemas import stored_login_name
from qortex.identity.service import ApiKeyCache, revoke_keys_minted_for
from qortex.security import tokens
from qortex.security.allowlist import contains
from qortex.security.passwords import Passwords
from qortex.security.principal import Principal
from qortex.security.rbac import Role
from qortex.security.revocation import SessionRevocations
from qortex.security.throttle import FailureStore, LoginThrottle, MemoryFailureStore, RedisFailureStore
from qortex.security.tokens import AccessTokens, InvalidToken
from qortex.tenants import repository as tenant_repository
from qortex.tenants.models import Tenant
from qortex.tenants.policy import TenantPolicyCache

log = structlog.get_logger("qortex.identity.auth")

# One answer for an unknown account, a wrong password and an inactive account, so none can be told apart.
LOGIN_REFUSED = "invalid username or password"
REFRESH_REFUSED = "the refresh token is not valid"
IP_NOT_ALLOWED = "ip_not_allowed"
TENANT_SUSPENDED = "tenant_suspended"


@dataclass(slots=True)
class AuthServices:
    """The process's password hasher, token keyring, ended-session set and login throttle."""

    passwords: Passwords
    tokens: AccessTokens
    revocations: SessionRevocations
    throttle: LoginThrottle
    refresh_lifetime: timedelta
    audit_writer: AuditWriter
    redis: Redis | None
    policies: TenantPolicyCache

    @classmethod
    async def start(
        cls, settings: Settings, db: Database, audit_writer: AuditWriter, policies: TenantPolicyCache
    ) -> AuthServices:
        access = AccessTokens.from_settings(settings)
        revocations = SessionRevocations(
            db=db,
            token_lifetime=access.lifetime,
            poll_seconds=settings.session_poll_seconds,
            redis_url=settings.redis_url,
        )
        await revocations.start()
        redis = Redis.from_url(settings.redis_url, socket_timeout=1.0) if settings.redis_url else None
        store: FailureStore = RedisFailureStore(redis) if redis is not None else MemoryFailureStore()
        throttle = LoginThrottle(
            store,
            account_free=settings.login_free_failures_per_account,
            ip_free=settings.login_free_failures_per_ip,
            max_backoff_seconds=settings.login_max_backoff_seconds,
        )
        return cls(
            passwords=Passwords.from_settings(settings),
            tokens=access,
            revocations=revocations,
            throttle=throttle,
            refresh_lifetime=timedelta(days=settings.refresh_token_days),
            audit_writer=audit_writer,
            redis=redis,
            policies=policies,
        )

    async def stop(self) -> None:
        await self.revocations.stop()
        if self.redis is not None:
            await self.redis.aclose()

    def authenticate(self, token: str) -> Principal:
        """Verifies an access token in memory: signature, claims, and that its session has not ended."""
        try:
            claims = self.tokens.verify(token)
        except InvalidToken:
            raise Unauthenticated() from None
        if self.revocations.is_ended(claims.session_id):
            raise Unauthenticated("the session has ended; log in again")
        return Principal(
            tenant_id=claims.tenant_id,
            role=claims.role,
            credential_id=claims.session_id,
            credential_kind="session",
            user_id=claims.user_id,
        )


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_token_expires_at: datetime


def _record(
    action: str,
    *,
    user_id: uuid.UUID,
    origin: Origin,
    outcome: str = "success",
    anonymous: bool = False,
    **details: str,
) -> AuditRecord:
    """A record of the person's act; `anonymous` when the caller has not shown they are that person (a refused
    login), who is then its target only, so filtering the trail by their id does not blame them for it."""
    return AuditRecord(
        action=action,
        outcome=outcome,
        actor_kind="anonymous" if anonymous else "user",
        actor_id=None if anonymous else str(user_id),
        target_type="user",
        target_id=str(user_id),
        request_id=origin.request_id,
        client_ip=origin.client_ip,
        details=dict(details),
    )


def _new_refresh(scope: TenantScope, session_id: uuid.UUID, expires_at: datetime) -> tuple[str, RefreshToken]:
    plaintext = tokens.new_refresh_token()
    row = RefreshToken(
        id=new_id(),
        tenant_id=scope.tenant_id,
        session_id=session_id,
        token_sha256=tokens.refresh_token_sha256(plaintext),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    return plaintext, row


def _issue(auth: AuthServices, user: User, session_id: uuid.UUID, refresh: str, refresh_expires: datetime) -> Tokens:
    access = auth.tokens.issue(user_id=user.id, tenant_id=user.tenant_id, role=Role(user.role), session_id=session_id)
    return Tokens(
        access_token=access.token,
        expires_in=int(auth.tokens.lifetime.total_seconds()),
        refresh_token=refresh,
        refresh_token_expires_at=refresh_expires,
    )


def _login_budget(name: str) -> str:
    """The throttle counter of logins by this name (a username or an email, as typed, lowercased)."""
    return f"name:{name}"


def _password_change_budget(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


async def login(*, db: Database, auth: AuthServices, login_name: str, password: str, origin: Origin) -> Tokens:
    """Checks a username-or-email and password; answers a new session's tokens or the one refusal."""
    # One form per name, for the lookup and for its throttle budget: another spelling of an address (decomposed
    # accents, a punycode domain) would otherwise miss its person, or bring a fresh budget of guesses.
    name = stored_login_name(login_name)
    async with db.system_session() as session:
        user = await repo.find_for_login(session=session, login=name)
    # Counted per name as typed, for real and unknown accounts alike: a budget shared by an account's
    # username and email would answer 429 to one after failures on the other, telling an outsider that
    # the account exists and which email is its username's.
    throttled_as = _login_budget(name)
    await auth.throttle.admit(identifier=throttled_as, client_ip=origin.client_ip)
    # The password is verified even for an unknown or inactive account, so every refusal costs the same.
    matches = await auth.passwords.verify_async(user.password_hash if user else None, password)
    # From outside the tenant's allow-list a login is refused like a wrong password: a distinct answer
    # would tell an outsider that the password was right.
    refusal = await _tenant_refusal(auth, TenantScope(user.tenant_id), origin) if user is not None else None
    if user is None or not matches or not user.active or refusal is not None:
        if user is None:
            # No tenant to record it in; the attempted name is personal data and is not logged.
            log.warning("login_failed", reason="unknown_account", client_ip=origin.client_ip)
        else:
            reason = "wrong_password" if not matches else "inactive_account" if not user.active else str(refusal)
            # Not awaited: waiting for the commit would make a real account's refusal measurably slower
            # than an unknown one's.
            # A wrong password shows nothing of who tried; the other refusals come after the right one.
            anonymous = not matches
            auth.audit_writer.write_refusal_in_background(
                TenantScope(user.tenant_id),
                _record(
                    "auth.login", user_id=user.id, origin=origin, outcome="failure", anonymous=anonymous, reason=reason
                ),
            )
        raise Unauthenticated(LOGIN_REFUSED)
    await auth.throttle.succeeded(identifier=throttled_as, client_ip=origin.client_ip)
    new_hash = await auth.passwords.hash_async(password) if auth.passwords.needs_rehash(user.password_hash) else None

    scope = TenantScope(user.tenant_id)
    now = utcnow()
    refresh_expires = now + auth.refresh_lifetime
    auth_session = AuthSession(
        id=new_id(), tenant_id=scope.tenant_id, user_id=user.id, created_at=now, expires_at=refresh_expires
    )
    refresh, refresh_row = _new_refresh(scope, auth_session.id, refresh_expires)
    async with db.tenant_session(scope, write=True) as session:
        current = await repo.get_user(session=session, scope=scope, user_id=user.id, for_update=True)
        # Deactivated, or the password changed, since it was verified: a change ends sessions, so none may start.
        # Its time, not its hash, tells: a login beside this one may have replaced an old hash of the same password.
        if current is None or not current.active or current.password_changed_at != user.password_changed_at:
            raise Unauthenticated(LOGIN_REFUSED)
        if new_hash is not None and current.password_hash == user.password_hash:
            current.password_hash = new_hash
        session.add(auth_session)
        await session.flush()
        session.add(refresh_row)
        await audit.append(
            session=session,
            scope=scope,
            records=[_record("auth.login", user_id=user.id, origin=origin, session_id=str(auth_session.id))],
        )
        user = current
    return _issue(auth, user, auth_session.id, refresh, refresh_expires)


async def refresh(
    *, db: Database, auth: AuthServices, refresh_token: str, origin: Origin, key_cache: ApiKeyCache | None = None
) -> Tokens:
    """Rotates a refresh token; a used one presented again ends its whole session and the person's minted keys."""
    digest = tokens.refresh_token_sha256(refresh_token)
    async with db.system_session() as session:
        found = await repo.find_refresh_token(session=session, token_sha256=digest)
    if found is None:
        raise Unauthenticated(REFRESH_REFUSED)
    scope = TenantScope(found.tenant_id)
    refusal = await _tenant_refusal(auth, scope, origin)
    now = utcnow()
    reused_session: uuid.UUID | None = None
    revoked_keys: list[uuid.UUID] = []
    refused_user: uuid.UUID | None = None
    issued: Tokens | None = None
    async with db.tenant_session(scope, write=True) as session:
        owner = await repo.get_session(session=session, scope=scope, session_id=found.session_id)
        if owner is None:
            raise Unauthenticated(REFRESH_REFUSED)
        # The person's row first, as grants and changes to the person lock it: a reuse's revocation of the
        # person's keys then waits for a key being minted for them, and sees it (qortex.identity.actors).
        people = await lock_people(session=session, scope=scope, user_ids={owner.user_id})
        token = await repo.get_refresh_token(session=session, scope=scope, token_id=found.id, for_update=True)
        auth_session = await repo.get_session(
            session=session, scope=scope, session_id=found.session_id, for_update=True
        )
        if token is None or auth_session is None:
            raise Unauthenticated(REFRESH_REFUSED)
        user = people.get(auth_session.user_id)
        live = (
            auth_session.ended_at is None
            and token.expires_at > now
            and auth_session.expires_at > now
            and user is not None
            and user.active
        )
        if token.used_at is not None:
            # A used token again: a copy exists somewhere. End the family, whoever holds the newest token.
            was_live = auth_session.ended_at is None and auth_session.expires_at > now
            await repo.end_sessions(
                session=session, scope=scope, at=now, reason="refresh_reuse", session_id=auth_session.id
            )
            if was_live:
                # Whoever copied the token could have minted keys with it; they would outlive the session.
                # Only while it lives: an old token of a session long over must not be a way to revoke
                # a person's keys at will. Before the audit append, which locks the chain head last.
                revoked_keys = await revoke_keys_minted_for(
                    session=session,
                    scope=scope,
                    user_id=auth_session.user_id,
                    at=now,
                    actor="system",
                    reason="refresh_reuse",
                )
            await audit.append(
                session=session,
                scope=scope,
                records=[
                    _record(
                        "auth.refresh_reuse",
                        user_id=auth_session.user_id,
                        origin=origin,
                        outcome="failure",
                        session_id=str(auth_session.id),
                    )
                ],
            )
            reused_session = auth_session.id
        elif live and refusal is not None:
            # Nothing changes: the token stays unused, so its holder may refresh from an allowed address
            # (or once the tenant is resumed). A dead token learns nothing about the tenant's policy.
            refused_user = auth_session.user_id
        elif live and user is not None:
            token.used_at = now
            plaintext, row = _new_refresh(scope, auth_session.id, auth_session.expires_at)
            session.add(row)
            await audit.append(
                session=session,
                scope=scope,
                records=[_record("auth.refresh", user_id=user.id, origin=origin, session_id=str(auth_session.id))],
            )
            issued = _issue(auth, user, auth_session.id, plaintext, auth_session.expires_at)
    if reused_session is not None:
        await auth.revocations.end([reused_session])
    if key_cache is not None:  # elsewhere the cache forgets them within its few seconds
        key_cache.forget(*revoked_keys)
    if refused_user is not None and refusal is not None:
        await auth.audit_writer.write_refusal(
            scope,
            _record("auth.refresh", user_id=refused_user, origin=origin, outcome="failure", reason=refusal),
        )
        raise TenantSuspended() if refusal == TENANT_SUSPENDED else IpNotAllowed.at(origin.client_ip)
    if issued is None:
        raise Unauthenticated(REFRESH_REFUSED)
    return issued


async def _tenant_refusal(auth: AuthServices, scope: TenantScope, origin: Origin) -> str | None:
    """Why the tenant's policy refuses a session from this origin (suspended, address not allowed), or None."""
    policy = await auth.policies.get(scope)
    if not policy.active:
        return TENANT_SUSPENDED
    if policy.allowed_networks and not contains(policy.allowed_networks, origin.client_ip):
        return IP_NOT_ALLOWED
    return None


async def tenant_of(*, db: Database, scope: TenantScope) -> Tenant:
    async with db.tenant_session(scope) as session:
        tenant = await tenant_repository.get_in_scope(session=session, scope=scope)
    if tenant is None:
        raise Unauthenticated()
    return tenant


async def logout(*, db: Database, auth: AuthServices, principal: Principal, origin: Origin) -> None:
    """Ends the caller's session: its refresh token stops working and its access tokens are refused."""
    if principal.credential_kind != "session" or principal.user_id is None:
        raise InvalidInput("logout ends a person's session; an API key is revoked instead")
    scope = principal.scope
    async with db.tenant_session(scope, write=True) as session:
        ended = await repo.end_sessions(
            session=session, scope=scope, at=utcnow(), reason="logout", session_id=principal.credential_id
        )
        if ended:
            await audit.append(
                session=session,
                scope=scope,
                records=[
                    _record(
                        "auth.logout", user_id=principal.user_id, origin=origin, session_id=str(principal.credential_id)
                    )
                ],
            )
    await auth.revocations.end([principal.credential_id])


async def change_own_password(
    *,
    db: Database,
    auth: AuthServices,
    principal: Principal,
    current: str,
    new: str,
    origin: Origin,
    key_cache: ApiKeyCache | None = None,
) -> None:
    """A person changes their own password, proving the current one; every session of theirs ends and
    every key minted for them is revoked."""
    if principal.user_id is None:
        raise InvalidInput("only a person's session can change its password")
    scope = principal.scope
    async with db.tenant_session(scope) as session:
        user = await repo.get_user(session=session, scope=scope, user_id=principal.user_id)
    if user is None or not user.active:
        raise Unauthenticated()
    # Its own budget, so outsiders failing logins by this name cannot stop the person changing it. A wrong
    # guess also counts against the username's login budget, so guesses through a stolen access token use
    # up the login's; the token still has this budget's own backoff, which at most doubles its guess rate
    # (gating the change on the login budget too would let any outsider block it).
    await auth.throttle.admit(identifier=_password_change_budget(user.id), client_ip=origin.client_ip)
    if not await auth.passwords.verify_async(user.password_hash, current):
        await auth.throttle.count_failure(identifier=_login_budget(user.username))
        await auth.audit_writer.write_refusal(
            scope,
            _record("user.password_change", user_id=user.id, origin=origin, outcome="failure", reason="wrong_password"),
        )
        raise InvalidInput(
            "the current password is wrong",
            errors=[{"loc": ["body", "current_password"], "msg": "wrong password"}],
        )
    await auth.throttle.succeeded(identifier=_password_change_budget(user.id), client_ip=origin.client_ip)
    new_hash = await auth.passwords.hash_async(new)
    now = utcnow()
    async with db.tenant_session(scope, write=True) as session:
        # The person's row first, as every flow that ends their sessions locks it: a session ended since the
        # request was authenticated (a logout, a deactivation, a role change, or a reset, which this change
        # would otherwise write over) is seen here and refused.
        people = await lock_people(session=session, scope=scope, user_ids={user.id})
        await confirm_actor(session=session, scope=scope, actor=principal, locked=people)
        row = people[user.id]
        row.password_hash = new_hash
        row.password_changed_at = now
        row.updated_at = now
        ended = await repo.end_sessions(session=session, scope=scope, at=now, reason="password_change", user_id=row.id)
        # Changing one's password is what one does on suspecting a theft: the thief's minted keys go too.
        # Before the audit append: every flow locks the audit chain head last.
        revoked_keys = await revoke_keys_minted_for(
            session=session, scope=scope, user_id=row.id, at=now, actor=principal, reason="password_change"
        )
        await audit.append(
            session=session,
            scope=scope,
            records=[_record("user.password_change", user_id=row.id, origin=origin, sessions_ended=str(len(ended)))],
        )
    await auth.revocations.end(ended)
    if key_cache is not None:
        key_cache.forget(*revoked_keys)
