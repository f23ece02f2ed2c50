"""Response bodies of the audit API: events as stored (hashes included, so a reader can re-check the chain)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int = Field(description="Position in the tenant's chain, from 1")
    occurred_at: datetime
    action: str
    outcome: str
    actor_kind: str = Field(
        description="user, api_key, operator, system, or anonymous: a caller not yet authenticated (a refused login)"
    )
    actor_id: str | None = Field(
        description="A pseudonymous id (user or key id), never a name or email; null when there is none"
    )
    target_type: str | None
    target_id: str | None
    request_id: str | None
    client_ip: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditEventPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


class ChainVerdictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    intact: bool
    events_checked: int = Field(description="Events found in order and unaltered before the first break")
    first_broken_seq: int | None = Field(description="The chain position where it breaks; null when intact")
    reason: str | None
