"""What `GET /v1/tenant/usage` answers: each limit with its current use and when it frees up."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class LimitUsage(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    limit: int = Field(description="The tenant's effective limit (its plan's, or its override).")
    used: int = Field(description="How much of it is used now.")
    remaining: int
    window_seconds: int | None = Field(
        default=None, description="Length of the rolling window; null for limits that are not windows."
    )
    resets_at: datetime | None = Field(
        default=None, description="When the oldest use counted in the window leaves it; null when nothing is used."
    )


class TenantUsage(BaseModel):
    plan: str
    requests_per_minute: LimitUsage
    requests_per_hour: LimitUsage
    predictions_per_day: LimitUsage
    concurrent_requests: LimitUsage
    stored_bytes: LimitUsage
    max_batch_items: int = Field(description="The largest batch this tenant may submit.")
