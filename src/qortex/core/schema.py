"""Imports every ORM module so `Base.metadata` describes the whole schema (for migrations)."""

from __future__ import annotations

from qortex.audit import models as audit_models
from qortex.core import idempotency
from qortex.core.database import Base
from qortex.identity import models as identity_models
from qortex.models import models as model_models
from qortex.predictions import models as prediction_models
from qortex.security import seen_signatures
from qortex.tenants import models as tenant_models

metadata = Base.metadata
ORM_MODULES = (
    audit_models,
    idempotency,
    identity_models,
    model_models,
    prediction_models,
    seen_signatures,
    tenant_models,
)
