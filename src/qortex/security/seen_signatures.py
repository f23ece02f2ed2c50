"""Signatures already accepted, kept in the database when there is no Redis, so a replay is refused everywhere.

Without Redis, every process and replica shares the database, and it survives a restart: a captured signed
request cannot be sent again to another worker, or to the same one after a restart, while its timestamp is
still inside the window. Each signed request costs one small insert; the housekeeping sweeps expired rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from qortex.core.clock import utcnow
from qortex.core.database import Base, Database, TenantScope
from qortex.core.housekeeping import delete_in_chunks
from qortex.security.signing import NonceStore, RedisNonceStore

SWEEP_CHUNK = 1000


class SeenSignature(Base):
    """A signature accepted once, refused again until its timestamp has left the window."""

    __tablename__ = "seen_signatures"
    __table_args__ = (Index("ix_seen_signatures_tenant_expires", "tenant_id", "expires_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    signature_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]


class DatabaseNonceStore:
    """The nonce store without Redis: the primary key refuses a second insert of one signature."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, scope: TenantScope, signature_sha256: str, ttl_seconds: int) -> bool:
        # An expired row is never in the way: by then the signature's timestamp is stale, refused before this.
        expires_at = utcnow() + timedelta(seconds=max(1, ttl_seconds))
        try:
            async with self._db.tenant_session(scope, write=True) as session:
                session.add(
                    SeenSignature(tenant_id=scope.tenant_id, signature_sha256=signature_sha256, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True

    async def close(self) -> None:
        """Nothing to release: the rows stay, for the other processes and the next start."""


async def sweep_expired(*, db: Database, scope: TenantScope) -> int:
    """Deletes the tenant's seen signatures whose window has passed; returns how many."""

    async def delete_chunk(session: AsyncSession, limit: int) -> int:
        expired = (
            select(SeenSignature.signature_sha256)
            .where(SeenSignature.tenant_id == scope.tenant_id, SeenSignature.expires_at <= utcnow())
            .limit(limit)
        )
        result = await session.execute(
            delete(SeenSignature).where(
                SeenSignature.tenant_id == scope.tenant_id,
                SeenSignature.signature_sha256.in_(expired.scalar_subquery()),
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    return await delete_in_chunks(db=db, scope=scope, delete_chunk=delete_chunk, chunk_size=SWEEP_CHUNK)


def nonce_store(*, redis_url: str | None, db: Database) -> NonceStore:
    return RedisNonceStore(redis_url) if redis_url else DatabaseNonceStore(db)
