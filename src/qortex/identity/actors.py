"""Whether the credential behind a request still stands, checked inside a transaction that grants power.

Credentials are verified from short-lived caches (up to 5 s), so a request can pass authentication just
before its session ends or its key is revoked. For most requests that delay is the documented bound. A
request that creates a key or a user, or changes one (one's own password included), or changes the
tenant's request security (allow-list, signing requirement, signing secret), would make it permanent:
the new key or account outlives the revocation, a changed password a reset, a rotated secret is shown
to an ended session. Such requests check the credential again in their own write transaction.

The check runs first in the grant's transaction and locks the row of the person behind the credential.
Everything that ends a person's sessions and revokes the keys minted for them (a role change, a reset, a
deactivation, their own password change, a reused refresh token) locks the same row first. So either the
grant commits first and that revocation, whose statements start after it, sees and revokes what it made;
or the revocation commits first and the grant sees the ended credential and is refused.

Lock order, in every flow: people (by id) first; revoked API keys just before the audit chain head, which
comes last.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit import service as audit
from qortex.audit.service import AuditRecord
from qortex.core import idempotency
from qortex.core.clock import utcnow
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Unauthenticated
from qortex.core.idempotency import Answer, IdempotentRequest
from qortex.identity import repository as key_repository
from qortex.identity import user_repository
from qortex.identity.models import User
from qortex.security.principal import Principal


async def lock_people(*, session: AsyncSession, scope: TenantScope, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, User]:
    """Locks these users' rows in id order (two requests locking the same pair never wait on each other)."""
    return {user.id: user for user in await user_repository.lock_users(session=session, scope=scope, user_ids=user_ids)}


async def confirm_actor(
    *, session: AsyncSession, scope: TenantScope, actor: Principal | None, locked: dict[uuid.UUID, User] | None = None
) -> None:
    """Raises Unauthenticated unless `actor`'s credential and person are still live; None is the operator.

    `locked` holds rows the caller already locked with `lock_people`; otherwise the person is locked here.
    """
    if actor is None:
        return
    person_id = actor.person_id
    if person_id is not None:
        people = locked if locked is not None else await lock_people(session=session, scope=scope, user_ids={person_id})
        person = people.get(person_id)
        if person is None or not person.active:
            raise Unauthenticated()
    if actor.credential_kind == "session":
        found = await user_repository.get_session(session=session, scope=scope, session_id=actor.credential_id)
        if found is None or found.ended_at is not None or found.expires_at <= utcnow():
            raise Unauthenticated("the session has ended; log in again")
        return
    key = await key_repository.get(session=session, scope=scope, key_id=actor.credential_id)
    if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utcnow()):
        raise Unauthenticated()


async def commit_grant(
    *,
    db: Database,
    scope: TenantScope,
    request: IdempotentRequest | None,
    rows: list[Any],
    stored_body: dict[str, Any],
    actor: Principal | None,
    record: AuditRecord,
) -> Answer | None:
    """`idempotency.commit_once` for new rows that grant power: the actor is confirmed before they are
    inserted (its lock taken first) and the audit record appended after them (the chain head locked last)."""

    async def confirm(session: AsyncSession) -> None:
        await confirm_actor(session=session, scope=scope, actor=actor)

    async def record_grant(session: AsyncSession) -> None:
        await audit.append(session=session, scope=scope, records=[record])

    return await idempotency.commit_once(
        db=db,
        scope=scope,
        request=request,
        groups=[rows],
        stored_body=stored_body,
        before_rows=confirm,
        in_transaction=record_grant,
    )
