"""Group commit: the rows of many concurrent requests share one transaction (and one fsync) per tenant.

Every caller still waits until its own rows are committed, so nothing is acknowledged before it is
durable. If a shared transaction fails in the database (two requests racing with one Idempotency-Key, or
one request's rows refused), the group is retried one request at a time, so each gets its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError

from qortex.core import idempotency
from qortex.core.database import Base, Database, TableRows, TenantScope
from qortex.core.errors import StorageUnavailable
from qortex.core.idempotency import Answer, IdempotentRequest, RowGroup
from qortex.resilience.group_worker import TenantGroupWorker, fail


@dataclass(slots=True)
class _Pending:
    scope: TenantScope
    request: IdempotentRequest | None
    groups: Sequence[RowGroup]
    stored_body: dict[str, Any]
    done: asyncio.Future[Answer | None] = field(repr=False)


class GroupCommitter(TenantGroupWorker[_Pending]):
    def __init__(self, db: Database, *, max_requests: int = 256) -> None:
        super().__init__(db, name="qortex-group-commit", max_group=max_requests)

    async def commit(
        self,
        *,
        scope: TenantScope,
        request: IdempotentRequest | None,
        groups: Sequence[RowGroup],
        stored_body: dict[str, Any],
    ) -> Answer | None:
        """Like `idempotency.commit_once`, batched with whatever else is waiting to be committed."""
        done: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self.put(_Pending(scope, request, groups, stored_body, done))
        return await done

    async def handle_tenant(self, scope: TenantScope, items: list[_Pending]) -> None:
        try:
            await self._commit_together(scope, items)
        except DBAPIError:
            # A constraint race, or one request's rows the database refuses: retry each request alone,
            # so only the request at fault fails. A StorageUnavailable is no DBAPIError: it is not retried
            # request by request, which would only wait again.
            for item in items:
                await self._commit_alone(item)

    async def _commit_alone(self, item: _Pending) -> None:
        try:
            answer = await idempotency.commit_once(
                db=self._db, scope=item.scope, request=item.request, groups=item.groups, stored_body=item.stored_body
            )
        except Exception as error:
            if isinstance(error, StorageUnavailable) and self._db.is_sqlite:
                raise  # the file is every request's: the rest of the group is answered at once, not one by one
            fail([item], error)
            return
        if not item.done.done():
            item.done.set_result(answer)

    async def _commit_together(self, scope: TenantScope, items: list[_Pending]) -> None:
        levels = max(len(item.groups) for item in items)
        merged = [
            group
            for level in range(levels)
            for group in _merge([item.groups[level] for item in items if level < len(item.groups)])
        ]
        async with self._db.tenant_session(scope, write=True) as session:
            await idempotency.add_groups(session=session, scope=scope, groups=merged)
            for item in items:
                if item.request is not None:
                    idempotency.remember(
                        session=session, scope=scope, request=item.request, status_code=201, body=item.stored_body
                    )


def _merge(groups: list[RowGroup]) -> list[RowGroup]:
    """One level of several requests' groups: ORM rows in one group, plain rows in one INSERT per table."""
    objects: list[Base] = []
    tables: dict[str, Table] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        if isinstance(group, TableRows):
            tables[group.table.name] = group.table
            rows.setdefault(group.table.name, []).extend(group.rows)
        else:
            objects.extend(group)
    merged: list[RowGroup] = [TableRows(tables[name], table_rows) for name, table_rows in rows.items()]
    return [objects, *merged] if objects else merged
