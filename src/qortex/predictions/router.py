"""HTTP routes of predictions: parse, authorise, call the service."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from pydantic.main import IncEx

from qortex.core.clock import QueryUtcDatetime
from qortex.core.idempotency import Answer, IdempotentRequest
from qortex.core.pagination import decode_cursor
from qortex.core.text import NO_CONTROL_CHARACTERS
from qortex.predictions import service
from qortex.predictions.repository import PredictionFilter
from qortex.predictions.schemas import (
    PredictionBatchCreate,
    PredictionBatchOut,
    PredictionCreate,
    PredictionOut,
    PredictionPage,
)
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.dependencies import Services, require
from qortex.web.idempotency import idempotency_key
from qortex.web.location import LOCATION_HEADER, location_of
from qortex.web.openapi import problem_responses
from qortex.web.pagination import PageCursor, PageLimit
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/predictions", tags=["predictions"], route_class=StrictJSONRoute)

CanCreate = Annotated[Principal, Depends(require(Permission.PREDICTIONS_CREATE))]
CanRead = Annotated[Principal, Depends(require(Permission.PREDICTIONS_READ))]
IdempotencyKey = Annotated[IdempotentRequest | None, Depends(idempotency_key)]

REPLAYED_HEADER = "Idempotent-Replayed"
BATCH = "batch"


# An unknown model is answered 404 for a single prediction, in its item's place in a batch.
@router.post("", status_code=201, response_model=PredictionOut, responses=problem_responses(404, 409, 507))
async def create_prediction(
    body: PredictionCreate,
    principal: CanCreate,
    services: Services,
    key: IdempotencyKey,
    request: Request,
) -> Response:
    """Predicts the direction of one series and stores the prediction."""
    async with services.limits.running_alone(principal, key):
        await services.limits.admit_predictions(request, principal, count=1, batch=False, replay_of=key)
        answer = await service.create(
            services=services.predictions,
            scope=principal.scope,
            request=body,
            key=key,
            quota=services.limits.quota_for(request, principal),
        )
    location = location_of(request, "get_prediction", prediction_id=answer.body["id"])
    return _answered(answer, status_code=201, headers={LOCATION_HEADER: location})


@router.post(f"/{BATCH}", status_code=200, response_model=PredictionBatchOut, responses=problem_responses(409, 507))
async def create_prediction_batch(
    body: PredictionBatchCreate,
    principal: CanCreate,
    services: Services,
    key: IdempotencyKey,
    request: Request,
) -> Response:
    """Predicts many series at once; each item answers 201 or its own problem."""
    async with services.limits.running_alone(principal, key):
        await services.limits.admit_predictions(request, principal, count=len(body.items), batch=True, replay_of=key)
        answer = await service.create_batch(
            services=services.predictions,
            scope=principal.scope,
            items=body.items,
            max_items=services.settings.batch_max_items,
            key=key,
            quota=services.limits.quota_for(request, principal),
        )
    return _answered(answer, status_code=200)


def _answered(answer: Answer, *, status_code: int, headers: dict[str, str] | None = None) -> Response:
    """The service built (and validated) the body already; FastAPI need not validate it a second time."""
    headers = {**(headers or {}), **({REPLAYED_HEADER: "true"} if answer.replayed else {})}
    return Response(orjson.dumps(answer.body), status_code=status_code, media_type="application/json", headers=headers)


class _PredictionIdRoute(StrictJSONRoute):
    reserved_segments = frozenset({BATCH})


async def get_prediction(prediction_id: uuid.UUID, principal: CanRead, services: Services) -> Response:
    """One prediction; roles that cannot create predictions see it without `subject_ref`."""
    found = await service.get(db=services.db, scope=principal.scope, prediction_id=prediction_id)
    return _visible_to(principal, found, exclude=SUBJECT_FIELDS)


router.add_api_route(
    "/{prediction_id}",
    get_prediction,
    methods=["GET"],
    response_model=PredictionOut,
    route_class_override=_PredictionIdRoute,
)


@router.get("", response_model=PredictionPage)
async def list_predictions(
    principal: CanRead,
    services: Services,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    source: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)] = None,
    direction: Literal["up", "down", "neutral"] | None = None,
    created_after: QueryUtcDatetime | None = None,
    created_before: QueryUtcDatetime | None = None,
) -> Response:
    """Newest first, `limit` per page; pass `next_cursor` back as `cursor` for the next page."""
    page = await service.list_predictions(
        db=services.db,
        scope=principal.scope,
        where=PredictionFilter(
            source=source, direction=direction, created_after=created_after, created_before=created_before
        ),
        limit=limit,
        before=decode_cursor(cursor),
    )
    listed = PredictionPage(items=list(page.items), next_cursor=page.next_cursor)
    return _visible_to(principal, listed, exclude={"items": {"__all__": SUBJECT_FIELDS}})


# A subject reference ties a series to a person: only roles that make predictions (and so supply it)
# see it; read-only roles (viewer, auditor) get every other field.
SUBJECT_FIELDS = {"subject_ref"}


def _visible_to(principal: Principal, body: BaseModel, *, exclude: IncEx) -> Response:
    hidden = None if principal.can(Permission.PREDICTIONS_CREATE) else exclude
    return Response(body.model_dump_json(exclude=hidden), media_type="application/json")
