"""HTTP routes of the audit trail: read the tenant's chain, and check that it is intact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from qortex.audit import service
from qortex.audit.schemas import AuditEventOut, AuditEventPage, ChainVerdictOut
from qortex.core.pagination import decode_cursor
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.dependencies import Services, require
from qortex.web.pagination import PageCursor, PageLimit
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=StrictJSONRoute)

CanRead = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


@router.get("/events", response_model=AuditEventPage)
async def list_audit_events(
    principal: CanRead,
    services: Services,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z_.]+$")] = None,
) -> AuditEventPage:
    """The tenant's audit events, newest first (by chain position); filter by `action`.

    An event with a field that cannot be read is listed too, that field null and named in `unreadable`.
    """
    page = await service.list_events(
        db=services.db, scope=principal.scope, limit=limit, before=decode_cursor(cursor), action=action
    )
    items = [AuditEventOut.model_validate({**e.fields, "unreadable": e.unreadable}) for e in page.items]
    return AuditEventPage(items=items, next_cursor=page.next_cursor)


@router.get("/verify", response_model=ChainVerdictOut)
async def verify_audit_chain(principal: CanRead, services: Services) -> ChainVerdictOut:
    """Recomputes the tenant's whole chain: any edited, deleted, inserted or reordered event breaks it."""
    return ChainVerdictOut.model_validate(await service.verify(db=services.db, scope=principal.scope))
