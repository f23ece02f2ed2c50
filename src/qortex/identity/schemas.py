"""Request and response bodies of the API keys API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr

from qortex.security.rbac import Role


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=100)
    role: Role = Field(description="Role the key acts with; at most the creator's own permissions")
    expires_at: AwareDatetime | None = Field(default=None, description="Timezone-aware expiry; never if unset")


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str | None = Field(
        description="The full key, shown this once; null when an Idempotency-Key replay answers (only its hash is kept)"
    )


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None
