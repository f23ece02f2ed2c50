"""Deleting login sessions, with their refresh tokens, a while after they finished."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.clock import utcnow
from qortex.core.database import Database, TenantScope
from qortex.core.housekeeping import delete_in_chunks
from qortex.identity import user_repository

# An ended session must stay readable for longer than its last access token lives (at most an hour), so a
# process that starts later still loads it into the set of ended sessions and refuses that token.
FINISHED_SESSION_RETENTION = timedelta(days=1)
SWEEP_CHUNK = 500


async def sweep_finished_sessions(*, db: Database, scope: TenantScope) -> int:
    """Deletes the tenant's sessions that expired or ended over a day ago; returns how many."""

    async def delete_chunk(session: AsyncSession, limit: int) -> int:
        finished = await user_repository.finished_session_ids(
            session=session, scope=scope, before=utcnow() - FINISHED_SESSION_RETENTION, limit=limit
        )
        if finished:
            await user_repository.delete_sessions(session=session, scope=scope, session_ids=finished)
        return len(finished)

    return await delete_in_chunks(db=db, scope=scope, delete_chunk=delete_chunk, chunk_size=SWEEP_CHUNK)
