"""The group worker: everything gathered is handled together, and nothing twice, even when stopped mid-group."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy.exc import DBAPIError

from qortex.core import idempotency
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Overloaded, StorageUnavailable
from qortex.core.group_commit import GroupCommitter
from qortex.resilience.group_worker import GroupWorker, TenantGroupWorker


@dataclass
class Item:
    name: str
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SlowRecorder(GroupWorker[Item]):
    """Handles items one by one, yielding between them, and records every handling."""

    def __init__(self) -> None:
        super().__init__(name="test-recorder", max_group=100)
        self.handled: list[str] = []
        self.first_handled = asyncio.Event()

    async def handle(self, group: list[Item]) -> None:
        for item in group:
            self.handled.append(item.name)
            item.done.set_result(None)
            self.first_handled.set()
            await asyncio.sleep(0.01)


async def test_items_put_together_are_handled_as_one_group() -> None:
    worker = SlowRecorder()
    items = [Item(str(n)) for n in range(5)]
    for item in items:
        worker.put(item)
    worker.start()
    await asyncio.gather(*(item.done for item in items))
    await worker.stop()
    assert worker.handled == ["0", "1", "2", "3", "4"]


async def test_stopping_mid_group_handles_the_rest_once_and_nothing_twice() -> None:
    worker = SlowRecorder()
    items = [Item(str(n)) for n in range(4)]
    for item in items:
        worker.put(item)
    worker.start()
    await worker.first_handled.wait()
    await worker.stop()
    assert sorted(worker.handled) == ["0", "1", "2", "3"]
    assert all(item.done.done() for item in items)


class Gate(GroupWorker[Item]):
    """Handles each group only once `release` is set, counting how often each item is handled."""

    def __init__(self) -> None:
        super().__init__(name="test-gate", max_group=100)
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.handled: list[str] = []

    async def handle(self, group: list[Item]) -> None:
        self.entered.set()
        await self.release.wait()
        for item in group:
            self.handled.append(item.name)
            item.done.set_result(None)


async def test_stop_lets_the_group_being_handled_finish_instead_of_cancelling_it() -> None:
    worker = Gate()
    worker.start()
    first = Item("first")
    worker.put(first)
    await worker.entered.wait()
    queued = Item("queued")
    worker.put(queued)
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the group, not cancelling it
    worker.release.set()
    await stopping
    assert worker.handled == ["first", "queued"]


async def test_items_put_after_stop_are_refused_at_once() -> None:
    worker = SlowRecorder()
    worker.start()
    await worker.stop()
    with pytest.raises(Overloaded) as refused:
        worker.put(Item("late"))
    assert refused.value.status == 503


class Failing(GroupWorker[Item]):
    def __init__(self) -> None:
        super().__init__(name="test-failing", max_group=1)
        self.calls = 0

    async def handle(self, group: list[Item]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a defect in one group")
        for item in group:
            item.done.set_result(None)


@pytest.mark.parametrize("log_writable", [True, False])
async def test_a_group_that_raises_fails_its_own_items_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch, log_writable: bool
) -> None:
    """Even when the failure cannot be logged (a closed stream): else the worker stops and callers wait forever."""
    if not log_writable:

        def unwritable(*args: object, **kwargs: object) -> None:
            raise ValueError("I/O operation on closed file.")

        monkeypatch.setattr("qortex.resilience.group_worker.log.exception", unwritable)
    worker = Failing()
    worker.start()
    first, second = Item("first"), Item("second")
    worker.put(first)
    worker.put(second)
    with pytest.raises(RuntimeError, match="a defect in one group"):
        await asyncio.wait_for(first.done, timeout=5)
    await asyncio.wait_for(second.done, timeout=5)
    await worker.stop()


async def test_settled_returns_once_everything_put_before_it_is_handled() -> None:
    worker = SlowRecorder()
    worker.start()
    for n in range(3):
        worker.put(Item(str(n)))
    await worker.settled()
    assert worker.handled == ["0", "1", "2"]
    worker.put(Item("3"))
    await worker.settled()
    assert worker.handled == ["0", "1", "2", "3"]
    await worker.stop()


async def test_settled_after_stop_is_refused_rather_than_waiting_forever() -> None:
    worker = SlowRecorder()
    worker.start()
    await worker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await worker.settled()


async def test_a_settled_call_given_up_on_does_not_stop_the_worker() -> None:
    """A caller that stops waiting (a time-out) leaves a cancelled marker: the worker must not die settling it."""
    worker = Gate()
    worker.start()
    worker.put(Item("first"))
    await worker.entered.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.settled(), timeout=0.01)
    worker.release.set()

    later = Item("later")
    worker.put(later)
    await asyncio.wait_for(later.done, timeout=5)
    await asyncio.wait_for(worker.stop(), timeout=5)
    assert worker.handled == ["first", "later"]


async def test_a_worker_whose_task_died_is_not_running_refuses_new_items_and_stop_handles_what_was_queued() -> None:
    """Readiness reads `running`; an item put after the death would wait for ever, so it is refused with 503; a
    shutdown must not fail on a dead worker, nor drop what was queued before it died."""
    worker = SlowRecorder()
    assert not worker.running
    worker.start()
    assert worker.running
    queued = Item("queued")
    worker.put(queued)  # before the task first runs: it dies with the item still queued
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "test-recorder")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not worker.running
    with pytest.raises(StorageUnavailable):
        worker.put(Item("late"))
    await asyncio.wait_for(worker.stop(), timeout=5)
    assert queued.done.done() and worker.handled == ["queued"]
    assert not worker.running


async def test_settled_on_a_worker_whose_task_died_is_refused_rather_than_waiting_forever() -> None:
    worker = SlowRecorder()
    worker.start()
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "test-recorder")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(RuntimeError, match="not running"):
        await asyncio.wait_for(worker.settled(), timeout=5)
    await asyncio.wait_for(worker.stop(), timeout=5)


@dataclass
class TenantItem:
    scope: TenantScope
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class UnavailableForFirstTenant(TenantGroupWorker[TenantItem]):
    """Finds the database unable to serve the first tenant of a group; stores the others' items."""

    def __init__(self, *, sqlite: bool) -> None:
        super().__init__(cast("Database", SimpleNamespace(is_sqlite=sqlite)), name="test-tenants", max_group=100)
        self.tried: list[TenantScope] = []

    async def handle_tenant(self, scope: TenantScope, items: list[TenantItem]) -> None:
        self.tried.append(scope)
        if len(self.tried) == 1:
            raise StorageUnavailable()


@pytest.mark.parametrize("sqlite", [True, False])
async def test_a_tenant_the_database_cannot_serve_fails_the_group_s_other_tenants_at_once_only_on_sqlite(
    sqlite: bool,
) -> None:
    """SQLite's one write lock is every tenant's: trying the others would only wait out a busy timeout each. On
    PostgreSQL a lock or statement time-out can be one tenant's own, so the others are still stored."""
    worker = UnavailableForFirstTenant(sqlite=sqlite)
    scopes = [TenantScope(uuid.uuid4()) for _ in range(3)]
    items = [TenantItem(scope) for scope in scopes for _ in range(2)]
    for item in items:
        worker.put(item)
    worker.start()
    outcomes = await asyncio.gather(*(item.done for item in items), return_exceptions=True)
    await worker.stop()
    assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes[:2])
    if sqlite:
        assert worker.tried == scopes[:1]
        assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes[2:])
    else:
        assert worker.tried == scopes
        assert outcomes[2:] == [None] * 4


@pytest.mark.parametrize("sqlite", [True, False])
async def test_a_group_commit_retried_request_by_request_stops_at_a_sqlite_database_that_cannot_serve(
    sqlite: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a shared transaction fails on one request's rows, each request is retried alone; if SQLite then finds
    itself locked, every retry would wait out a busy timeout of its own, and the group's other tenants too."""
    committer = GroupCommitter(cast("Database", SimpleNamespace(is_sqlite=sqlite)))
    tried: list[TenantScope] = []

    async def shared_transaction_refused(scope: TenantScope, items: list[object]) -> None:
        raise DBAPIError("INSERT ...", None, Exception("a unique constraint"))

    async def locked(*, scope: TenantScope, **_: object) -> None:
        tried.append(scope)
        raise StorageUnavailable()

    monkeypatch.setattr(committer, "_commit_together", shared_transaction_refused)
    monkeypatch.setattr(idempotency, "commit_once", locked)
    first, second = TenantScope(uuid.uuid4()), TenantScope(uuid.uuid4())
    answers = [
        asyncio.ensure_future(committer.commit(scope=scope, request=None, groups=[], stored_body={}))
        for scope in (first, first, first, second)
    ]
    committer.start()
    outcomes = await asyncio.gather(*answers, return_exceptions=True)
    await committer.stop()
    assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)
    assert tried == ([first] if sqlite else [first, first, first, second])
