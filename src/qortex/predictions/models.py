from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from qortex.core.clock import utcnow
from qortex.core.database import Base
from qortex.core.ids import new_id


class PredictionInput(Base):
    __tablename__ = "prediction_inputs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    source: Mapped[str] = mapped_column(String(200))
    subject_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    n_values: Mapped[int]
    values_sha256: Mapped[str] = mapped_column(String(64))
    values_payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_tenant_source", "tenant_id", "source", "id"),
        Index("ix_predictions_tenant_direction", "tenant_id", "direction", "id"),
        Index("ix_predictions_tenant_subject", "tenant_id", "subject_ref"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    input_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prediction_inputs.id"))
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"))
    model_version: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200))
    subject_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    horizon: Mapped[int]
    direction: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Float)
    probability_up: Mapped[float] = mapped_column(Float)
    # Factors, patterns, quantum features and timings: tenant payload, encoded by the payload codec.
    details_payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
