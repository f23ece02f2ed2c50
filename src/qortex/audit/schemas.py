"""Response bodies of the audit API: events as stored (hashes included, so a reader can re-check the chain)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    """Every field but `id` is null where its stored value cannot be read; `unreadable` names those fields."""

    id: uuid.UUID
    seq: int | None = Field(description="Position in the tenant's chain, from 1")
    occurred_at: datetime | None
    action: str | None
    outcome: str | None
    actor_kind: str | None = Field(
        description=(
            "user, api_key, operator, system, or anonymous: a caller who has not shown who they are "
            "(a login refused for a wrong password)"
        )
    )
    actor_id: str | None = Field(
        description="A pseudonymous id (user or key id), never a name or email; null when there is none"
    )
    target_type: str | None
    target_id: str | None
    request_id: str | None
    client_ip: str | None
    details: dict[str, Any] | None
    prev_hash: str | None
    hash: str | None
    unreadable: dict[str, str] = Field(
        description="Each field whose stored value cannot be read (changed outside Qortex), with what it is not, "
        'e.g. {"details": "not a JSON object"}; such an event breaks the chain. Empty for a sound event'
    )


class AuditEventPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


class ChainVerdictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    intact: bool
    events_checked: int = Field(description="Events found in order and unaltered before the first break")
    first_broken_seq: int | None = Field(description="The chain position where it breaks; null when intact")
    reason: str | None
