"""Queries on users, sessions and refresh tokens. Every function but the two credential lookups takes the scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope, allow_lookup
from qortex.identity.models import AuthSession, RefreshToken, User
from qortex.security.rbac import Role


async def find_for_login(*, session: AsyncSession, login: str) -> User | None:
    """The user a login name (username or email) names: a read that precedes knowing the tenant.

    Usernames and emails are unique across tenants, so at most one row matches; the caller verifies
    the password before the row's tenant is used for anything.
    """
    await allow_lookup(session, "login", login)
    return await session.scalar(select(User).where(or_(User.username == login, User.email == login)))


async def find_refresh_token(*, session: AsyncSession, token_sha256: str) -> RefreshToken | None:
    """The refresh token with this digest: the other read that precedes knowing the tenant."""
    await allow_lookup(session, "refresh_token", token_sha256)
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_sha256 == token_sha256))


async def get_user(
    *, session: AsyncSession, scope: TenantScope, user_id: uuid.UUID, for_update: bool = False
) -> User | None:
    query = select(User).where(User.tenant_id == scope.tenant_id, User.id == user_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def lock_users(*, session: AsyncSession, scope: TenantScope, user_ids: set[uuid.UUID]) -> Sequence[User]:
    """Locks the rows in id order: PostgreSQL locks rows as the sorted result returns them."""
    query = select(User).where(User.tenant_id == scope.tenant_id, User.id.in_(user_ids)).order_by(User.id)
    return (await session.scalars(query.with_for_update())).all()


async def list_users(
    *, session: AsyncSession, scope: TenantScope, include_inactive: bool, limit: int, after: uuid.UUID | None
) -> Sequence[User]:
    query = select(User).where(User.tenant_id == scope.tenant_id)
    if not include_inactive:
        query = query.where(User.active.is_(True))
    if after is not None:
        query = query.where(User.id > after)
    return (await session.scalars(query.order_by(User.id).limit(limit))).all()


async def get_session(
    *, session: AsyncSession, scope: TenantScope, session_id: uuid.UUID, for_update: bool = False
) -> AuthSession | None:
    query = select(AuthSession).where(AuthSession.tenant_id == scope.tenant_id, AuthSession.id == session_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_refresh_token(
    *, session: AsyncSession, scope: TenantScope, token_id: uuid.UUID, for_update: bool = False
) -> RefreshToken | None:
    query = select(RefreshToken).where(RefreshToken.tenant_id == scope.tenant_id, RefreshToken.id == token_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def end_sessions(
    *,
    session: AsyncSession,
    scope: TenantScope,
    at: datetime,
    reason: str,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Ends the open sessions of a user, or one session; returns the ids that were open."""
    query = select(AuthSession).where(AuthSession.tenant_id == scope.tenant_id, AuthSession.ended_at.is_(None))
    if user_id is not None:
        query = query.where(AuthSession.user_id == user_id)
    if session_id is not None:
        query = query.where(AuthSession.id == session_id)
    if user_id is None and session_id is None:
        raise ValueError("end_sessions needs a user or a session")
    ended = []
    for row in (await session.scalars(query.with_for_update())).all():
        row.ended_at = at
        row.end_reason = reason
        ended.append(row.id)
    return ended


async def count_other_active_owners(*, session: AsyncSession, scope: TenantScope, user_id: uuid.UUID) -> int:
    query = select(func.count(User.id)).where(
        User.tenant_id == scope.tenant_id, User.role == Role.OWNER.value, User.active.is_(True), User.id != user_id
    )
    return int(await session.scalar(query) or 0)


async def finished_session_ids(
    *, session: AsyncSession, scope: TenantScope, before: datetime, limit: int
) -> list[uuid.UUID]:
    """Up to `limit` sessions that expired or were ended before `before`."""
    query = (
        select(AuthSession.id)
        .where(
            AuthSession.tenant_id == scope.tenant_id,
            or_(AuthSession.expires_at <= before, AuthSession.ended_at <= before),
        )
        .limit(limit)
    )
    return list(await session.scalars(query))


async def delete_sessions(*, session: AsyncSession, scope: TenantScope, session_ids: Sequence[uuid.UUID]) -> None:
    """Deletes these sessions and their refresh tokens."""
    await session.execute(
        delete(RefreshToken).where(RefreshToken.tenant_id == scope.tenant_id, RefreshToken.session_id.in_(session_ids))
    )
    await session.execute(
        delete(AuthSession).where(AuthSession.tenant_id == scope.tenant_id, AuthSession.id.in_(session_ids))
    )
