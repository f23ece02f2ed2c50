"""Request and response bodies of the tenant configuration API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from qortex.security.allowlist import MAX_ENTRIES, normalise_allowlist, normalise_cidr

CidrBlock = Annotated[StrictStr, Field(min_length=1, max_length=64), AfterValidator(normalise_cidr)]


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    plan: str
    created_at: datetime
    ip_allowlist: list[str] = Field(description="CIDR blocks requests must come from; empty means anywhere")
    require_signed_requests: bool
    has_signing_secret: bool = Field(description="Whether a signing secret exists (it is never shown again)")


class TenantUpdate(BaseModel):
    """Fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    ip_allowlist: list[CidrBlock] | None = Field(
        default=None,
        max_length=MAX_ENTRIES,
        description=f"IPv4 or IPv6 CIDR blocks (a bare address is one host), at most {MAX_ENTRIES}; [] allows any",
    )
    require_signed_requests: StrictBool | None = Field(
        default=None, description="Require HMAC-signed requests (needs a signing secret: rotate one first)"
    )
    confirm_lockout: StrictBool = Field(
        default=False,
        description="Allow an allow-list that does not contain the caller's own address (it locks the caller out)",
    )

    @field_validator("ip_allowlist")
    @classmethod
    def _deduplicate(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalise_allowlist(value)


class SigningSecretOut(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    signing_secret: str = Field(description="The new HMAC-SHA256 key, shown this once; the previous one stops working")
    algorithm: str = "hmac-sha256"
    signature_version: str = "v1"
