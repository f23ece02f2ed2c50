from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from qortex.core.clock import utcnow
from qortex.core.database import Base, TenantScope
from qortex.core.ids import new_id


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    plan: Mapped[str] = mapped_column(String(32), default="standard")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Overrides of the plan's quotas and rate limits, by limit name.
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # CIDR blocks allowed to call the API for this tenant; empty means anywhere.
    ip_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list)
    require_signed_requests: Mapped[bool] = mapped_column(default=False)
    # The HMAC request-signing secret, encoded by the payload codec (encrypted once a key provider exists).
    signing_secret_payload: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.id)
