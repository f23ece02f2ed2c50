"""Making predictions: validate, run the engine through the batcher, store durably, answer."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import TypeAdapter, ValidationError

from qortex.core import idempotency
from qortex.core.clock import utcnow
from qortex.core.database import Base, Database, TableRows, TenantScope
from qortex.core.errors import InvalidInput, NotFound, QortexError, StorageUnavailable
from qortex.core.group_commit import GroupCommitter
from qortex.core.idempotency import Answer, IdempotentRequest, RowGroup
from qortex.core.ids import new_ids
from qortex.core.pagination import Page, page_of
from qortex.core.payload import PayloadContext, payload_codec
from qortex.engine import InvalidSeriesError, PredictionResult
from qortex.models import service as model_service
from qortex.models.models import Model
from qortex.models.runtime import ModelRuntime
from qortex.predictions import repository
from qortex.predictions.models import Prediction, PredictionInput
from qortex.predictions.repository import PredictionFilter
from qortex.predictions.schemas import (
    BatchItemOut,
    PredictionCreate,
    PredictionOut,
    ProblemOut,
)
from qortex.resilience.batching import EngineBatcher


@dataclass(frozen=True, slots=True)
class PredictionServices:
    """What making a prediction needs besides the request: storage, loaded models, the engine queue."""

    db: Database
    runtime: ModelRuntime
    batcher: EngineBatcher
    committer: GroupCommitter


class Quota(Protocol):
    """The tenant's quotas as one request meets them."""

    async def check(self, count: int) -> None:
        """Raises when this many predictions clearly no longer fit the daily quota; charges nothing."""

    async def charge(self, count: int) -> None:
        """Charges this many predictions, about to be stored, to the daily quota; raises when they do not fit."""

    async def refund(self) -> None:
        """Gives back what `charge` charged, when none of those predictions was stored."""

    def stored(self, n_bytes: int) -> None:
        """Learns how many payload bytes were just committed, so the storage quota counts them at once."""


@dataclass(slots=True)
class _Planned:
    index: int
    request: PredictionCreate
    model: Model
    series: npt.NDArray[np.float64] = field(init=False)
    result: PredictionResult | None = None

    def __post_init__(self) -> None:
        self.series = np.asarray(self.request.values, dtype=np.float64)


def _check_horizon(model: Model, horizon: int) -> None:
    if horizon != model.horizon:
        raise InvalidInput(
            f"model {model.name}@{model.version} predicts {model.horizon} step(s) ahead, not {horizon}",
            errors=[{"loc": ["body", "horizon"], "msg": f"must be {model.horizon} for this model"}],
        )


def _details_context(scope: TenantScope, prediction_id: uuid.UUID) -> PayloadContext:
    return PayloadContext(scope.tenant_id, "predictions", prediction_id, "details_payload")


def _to_out(row: Prediction, details: dict[str, Any]) -> PredictionOut:
    return PredictionOut.model_validate(
        {
            "id": row.id,
            "input_id": row.input_id,
            "source": row.source,
            "subject_ref": row.subject_ref,
            "horizon": row.horizon,
            "direction": row.direction,
            "confidence": row.confidence,
            "probability_up": row.probability_up,
            "factors": details["factors"],
            "patterns": details["patterns"],
            "quantum": details["quantum"],
            "model": {"id": row.model_id, "name": details["model_name"], "version": row.model_version},
            "timings_ms": details["timings_ms"],
            "created_at": row.created_at,
        }
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    """One answered prediction: its input row, its prediction row and the JSON body that answers it."""

    source_row: dict[str, Any]
    row: dict[str, Any]
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Instant:
    """When a request's predictions were made, as stored and as the JSON answer spells it."""

    value: datetime
    json: str

    @classmethod
    def now(cls) -> _Instant:
        value = utcnow()
        return cls(value, _DATETIME.dump_python(value, mode="json"))


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _build_rows(scope: TenantScope, planned: _Planned, created: _Instant, ids: tuple[uuid.UUID, uuid.UUID]) -> _Stored:
    """Plain rows and a body that orjson writes as `PredictionOut` would (tests compare it with GET's answer).

    `ids` are the input's and the prediction's ids. The details and the body keep the engine's dataclasses
    and these ids (`uuid.UUID` itself, which orjson writes; asyncpg's subclass it does not) as they are:
    orjson writes them several times faster than converting each first.
    """
    request, model, result = planned.request, planned.model, planned.result
    if result is None:
        raise RuntimeError("a prediction is stored only after the engine answered it")
    codec = payload_codec()
    input_id, prediction_id = ids
    source_row = {
        "id": input_id,
        "tenant_id": scope.tenant_id,
        "source": request.source,
        "subject_ref": request.subject_ref,
        "n_values": len(planned.series),
        "values_sha256": hashlib.sha256(planned.series.tobytes()).hexdigest(),
        "values_payload": codec.encode(
            request.values, PayloadContext(scope.tenant_id, "prediction_inputs", input_id, "values_payload")
        ),
        "created_at": created.value,
    }
    details = {
        "factors": result.factors,
        "patterns": result.patterns,
        "quantum": result.quantum,
        "timings_ms": result.timings_ms,
        "model_name": model.name,
    }
    row = {
        "id": prediction_id,
        "tenant_id": scope.tenant_id,
        "input_id": input_id,
        "model_id": model.id,
        "model_version": model.version,
        "source": request.source,
        "subject_ref": request.subject_ref,
        "horizon": request.horizon,
        "direction": result.direction,
        "confidence": float(result.confidence),
        "probability_up": float(result.probability_up),
        "details_payload": codec.encode(details, _details_context(scope, prediction_id)),
        "created_at": created.value,
    }
    body = {
        "id": prediction_id,
        "input_id": input_id,
        "source": request.source,
        "subject_ref": request.subject_ref,
        "horizon": request.horizon,
        "direction": result.direction,
        "confidence": row["confidence"],
        "probability_up": row["probability_up"],
        "factors": details["factors"],
        "patterns": details["patterns"],
        "quantum": details["quantum"],
        "model": {"id": str(model.id), "name": model.name, "version": model.version},
        "timings_ms": details["timings_ms"],
        "created_at": created.json,
    }
    return _Stored(source_row, row, body)


_INPUTS = Base.metadata.tables[PredictionInput.__tablename__]
_PREDICTIONS = Base.metadata.tables[Prediction.__tablename__]


def _row_groups(stored: Sequence[_Stored]) -> list[RowGroup]:
    """Inputs first: a prediction row references its input row."""
    return [
        TableRows(_INPUTS, [item.source_row for item in stored]),
        TableRows(_PREDICTIONS, [item.row for item in stored]),
    ]


async def _run_engine(services: PredictionServices, planned: Sequence[_Planned]) -> None:
    """Runs each group of items that share a model and horizon as one engine batch."""
    groups: dict[tuple[uuid.UUID, int], list[_Planned]] = {}
    for item in planned:
        groups.setdefault((item.model.id, item.request.horizon), []).append(item)
    for (_, horizon), items in groups.items():
        predictor = services.runtime.load(items[0].model.artifact)
        try:
            results = await services.batcher.predict(predictor, [item.series for item in items], horizon)
        except InvalidSeriesError as error:
            raise InvalidInput(str(error)) from error
        for item, result in zip(items, results, strict=True):
            item.result = result


async def create(
    *,
    services: PredictionServices,
    scope: TenantScope,
    request: PredictionCreate,
    key: IdempotentRequest | None,
    quota: Quota,
) -> Answer:
    """Predicts one series and stores it; the 201 is sent only after the commit."""
    earlier = await idempotency.replay(db=services.db, scope=scope, request=key)
    if earlier is not None:
        return earlier
    model = await model_service.resolve(db=services.db, scope=scope, reference=request.model, runtime=services.runtime)
    _check_horizon(model, request.horizon)
    planned = _Planned(index=0, request=request, model=model)
    await quota.check(1)
    await _run_engine(services, [planned])
    await quota.charge(1)
    async with _refunded_unless_stored(quota):
        input_id, prediction_id = new_ids(2)
        stored = _build_rows(scope, planned, _Instant.now(), (input_id, prediction_id))
        earlier = await services.committer.commit(
            scope=scope, request=key, groups=_row_groups([stored]), stored_body=stored.body
        )
    if earlier is not None:  # a copy with the same Idempotency-Key stored its rows, charged for them, first
        await quota.refund()
        return earlier
    quota.stored(_payload_bytes([stored]))
    return Answer(stored.body, replayed=False)


@asynccontextmanager
async def _refunded_unless_stored(quota: Quota) -> AsyncIterator[None]:
    """Gives the request's charge back when its rows were certainly not stored: an error before or in the commit.

    Not for a PostgreSQL COMMIT whose connection was lost, which the server may have carried out; nor for a
    cancelled request, whose rows, once handed to the group commit, are committed without it.
    """
    try:
        yield
    except StorageUnavailable as error:
        if not error.outcome_unknown:
            await quota.refund()
        raise
    except Exception:
        await quota.refund()
        raise


def _problem(error: QortexError) -> ProblemOut:
    return ProblemOut(type=error.type, title=error.title, status=error.status, detail=error.detail, errors=error.errors)


def _validation_problem(error: ValidationError) -> ProblemOut:
    errors = [{"loc": ["body", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    fields = ", ".join(".".join(map(str, e["loc"])) or "item" for e in error.errors())
    return _problem(InvalidInput(f"invalid fields: {fields}", errors=errors))


async def create_batch(
    *,
    services: PredictionServices,
    scope: TenantScope,
    items: list[Any],
    max_items: int,
    key: IdempotentRequest | None,
    quota: Quota,
) -> Answer:
    """Predicts many series; a bad item gets its own problem and does not fail the others (nor is charged)."""
    # A stored answer replays even if the limit has been lowered since.
    earlier = await idempotency.replay(db=services.db, scope=scope, request=key)
    if earlier is not None:
        return earlier
    if len(items) > max_items:
        raise InvalidInput(
            f"a batch holds at most {max_items} items, got {len(items)}",
            errors=[{"loc": ["body", "items"], "msg": f"at most {max_items} items"}],
        )
    outcomes: dict[int, dict[str, Any]] = {}
    planned: list[_Planned] = []
    models: dict[str | None, Model | QortexError] = {}
    for index, parsed in enumerate(_parse_items(items)):
        if isinstance(parsed, ValidationError):
            outcomes[index] = _failed(index, 422, _validation_problem(parsed))
            continue
        try:
            if parsed.model not in models:
                models[parsed.model] = await model_service.resolve(
                    db=services.db, scope=scope, reference=parsed.model, runtime=services.runtime
                )
            model = models[parsed.model]
            if isinstance(model, QortexError):
                raise model
            _check_horizon(model, parsed.horizon)
        except StorageUnavailable:
            raise  # the whole batch is refused and nothing stored: one item's 503 would be stored as its answer
        except QortexError as error:
            models.setdefault(parsed.model, error)
            outcomes[index] = _failed(index, error.status, _problem(error))
            continue
        planned.append(_Planned(index=index, request=parsed, model=model))
    await quota.check(len(planned))  # only the items that will be predicted: a bad one takes no room
    await _run_engine(services, planned)
    await quota.charge(len(planned))
    async with _refunded_unless_stored(quota):
        created = _Instant.now()
        ids = new_ids(2 * len(planned))
        pairs = zip(ids[::2], ids[1::2], strict=True)
        stored = [_build_rows(scope, item, created, pair) for item, pair in zip(planned, pairs, strict=True)]
        for item, answer in zip(planned, stored, strict=True):
            outcomes[item.index] = {"index": item.index, "status": 201, "prediction": answer.body, "problem": None}
        body = {
            "succeeded": len(planned),
            "failed": len(items) - len(planned),
            "items": [outcomes[i] for i in range(len(items))],
        }
        earlier = await services.committer.commit(
            scope=scope, request=key, groups=_row_groups(stored), stored_body=body
        )
    if earlier is not None:
        await quota.refund()
        return earlier
    quota.stored(_payload_bytes(stored))
    return Answer(body, replayed=False)


def _payload_bytes(stored: Sequence[_Stored]) -> int:
    """What the storage quota counts of these rows (limits.repository.stored_bytes sums the same columns)."""
    return sum(len(item.source_row["values_payload"]) + len(item.row["details_payload"]) for item in stored)


_ITEMS: TypeAdapter[list[PredictionCreate]] = TypeAdapter(list[PredictionCreate])


def _parse_items(items: list[Any]) -> list[PredictionCreate | ValidationError]:
    """Validates all items in one pass; only when some item is bad are they validated one by one."""
    try:
        return list(_ITEMS.validate_python(items))
    except ValidationError:
        pass
    parsed: list[PredictionCreate | ValidationError] = []
    for raw in items:
        try:
            parsed.append(PredictionCreate.model_validate(raw))
        except ValidationError as error:
            parsed.append(error)
    return parsed


def _failed(index: int, status: int, problem: ProblemOut) -> dict[str, Any]:
    return BatchItemOut(index=index, status=status, problem=problem).model_dump(mode="json")


async def get(*, db: Database, scope: TenantScope, prediction_id: uuid.UUID) -> PredictionOut:
    async with db.tenant_session(scope) as session:
        row = await repository.get(session=session, scope=scope, prediction_id=prediction_id)
    if row is None:
        raise NotFound(f"prediction {prediction_id} not found")
    return _to_out(row, payload_codec().decode(row.details_payload, _details_context(scope, row.id)))


async def list_predictions(
    *, db: Database, scope: TenantScope, where: PredictionFilter, limit: int, before: uuid.UUID | None
) -> Page[PredictionOut]:
    _check_window(where)
    async with db.tenant_session(scope) as session:
        rows = await repository.list_predictions(
            session=session, scope=scope, where=where, limit=limit + 1, before=before
        )
    page = page_of(rows, limit=limit)
    codec = payload_codec()
    items = [_to_out(row, codec.decode(row.details_payload, _details_context(scope, row.id))) for row in page.items]
    return Page(items=items, next_cursor=page.next_cursor)


def _check_window(where: PredictionFilter) -> None:
    """Both bounds are exclusive, so a window that does not end after it starts holds nothing: that is swapped or
    mistyped bounds, which an empty page would pass off as a period without predictions."""
    after, before = where.created_after, where.created_before
    if after is not None and before is not None and before <= after:
        raise InvalidInput(
            f"created_before ({before.isoformat()}) must be later than created_after ({after.isoformat()})",
            errors=[{"loc": ["query", "created_before"], "msg": "must be later than created_after"}],
        )
