"""Request and response bodies of the predictions API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from qortex.core.text import NO_CONTROL_CHARACTERS, require_visible

MIN_VALUES = 8
MAX_VALUES = 4096

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
VisibleStr = Annotated[StrictStr, AfterValidator(require_visible)]


class PredictionCreate(BaseModel):
    """One series to predict. Numbers must be JSON numbers: strings are refused, not converted."""

    model_config = ConfigDict(extra="forbid")

    source: VisibleStr = Field(
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL_CHARACTERS,
        description="Where the series comes from, e.g. a metric name",
    )
    values: list[FiniteFloat] = Field(min_length=MIN_VALUES, max_length=MAX_VALUES)
    horizon: StrictInt = Field(default=1, ge=1, le=64, description="Steps ahead of the last value")
    subject_ref: VisibleStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL_CHARACTERS,
        description="The data subject this series describes, if any",
    )
    model: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL_CHARACTERS,
        description="Model id, name or name@version; default if unset",
    )


class PredictionBatchCreate(BaseModel):
    """Items are validated one by one, so one bad item is reported without failing the others."""

    model_config = ConfigDict(extra="forbid")

    # Any JSON value: an item that is not a prediction object (a string, null, a list) gets its own 422.
    items: list[Any] = Field(
        min_length=1, description="Prediction objects as for POST /v1/predictions; each is answered on its own"
    )


class FactorOut(BaseModel):
    name: str
    group: str
    value: float
    weight: float


class PatternOut(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    type: str
    strength: float
    start: int
    end: int
    period: float | None = None
    spatial_features: list[float]


class QuantumOut(BaseModel):
    expectations: list[float]
    correlations: list[float]


class ModelRef(BaseModel):
    id: uuid.UUID
    name: str
    version: str


class PredictionOut(BaseModel):
    id: uuid.UUID
    input_id: uuid.UUID
    source: str
    # Left out of the answer to roles that cannot create predictions (viewer, auditor), so not required.
    subject_ref: str | None = Field(default=None, description="Absent for roles that cannot create predictions")
    horizon: int
    direction: Literal["up", "down", "neutral"]
    confidence: float
    probability_up: float
    factors: list[FactorOut]
    patterns: list[PatternOut]
    quantum: QuantumOut
    model: ModelRef
    timings_ms: dict[str, float]
    created_at: datetime


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class BatchItemOut(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    index: int
    status: int
    prediction: PredictionOut | None = None
    problem: ProblemOut | None = None


class PredictionBatchOut(BaseModel):
    succeeded: int
    failed: int
    items: list[BatchItemOut]


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    next_cursor: str | None
