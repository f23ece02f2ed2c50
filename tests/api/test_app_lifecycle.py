"""The app's lifespan: what it changes in the process is undone when it stops."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from qortex import api
from qortex.api import YOUNG_GC_THRESHOLD, create_app
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.identity.auth_service import AuthServices
from qortex.limits.service import RateLimits


async def test_a_stopped_app_restores_the_collector_and_can_be_collected(settings: Settings) -> None:
    before = gc.get_threshold()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD
        database = weakref.ref(app.state.services.db)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    del app
    gc.collect()
    assert database() is None


async def test_only_the_first_app_of_a_process_makes_a_full_collection_before_freezing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later start would pay a full pass over the heap for garbage that its stop frees anyway."""
    collections: list[tuple[Any, ...]] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    api._collect_before_first_freeze.cache_clear()
    for _ in range(2):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 0
    assert collections == [()]


async def test_the_app_refuses_to_start_in_production_on_the_embedded_defaults(settings: Settings) -> None:
    """Served by any ASGI server (not only `qortex serve`), production needs an explicit database and keys."""
    app = create_app(settings.model_copy(update={"env": "production", "database_url": None}))
    with pytest.raises(RuntimeError, match="QORTEX_DATABASE_URL must be set explicitly in production"):
        async with app.router.lifespan_context(app):
            pass


def _service_tasks() -> set[str]:
    """The background tasks the app's services run, by name."""
    return {task.get_name() for task in asyncio.all_tasks() if task.get_name().startswith("qortex-")}


async def _refuse_to_start(*args: object, **kwargs: object) -> None:
    raise RuntimeError("signing keys unreadable")


async def _fail_to_close(self: RateLimits) -> None:
    raise ConnectionError("redis went away")


async def _start_and_stop(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pass


async def test_a_start_that_fails_partway_stops_what_it_had_started(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Database] = []
    disposed: list[Database] = []
    init, dispose = Database.__init__, Database.dispose

    def recording_init(self: Database, *args: Any, **kwargs: Any) -> None:
        opened.append(self)
        init(self, *args, **kwargs)

    async def recording_dispose(self: Database) -> None:
        disposed.append(self)
        await dispose(self)

    monkeypatch.setattr(AuthServices, "start", _refuse_to_start)
    monkeypatch.setattr(Database, "__init__", recording_init)
    monkeypatch.setattr(Database, "dispose", recording_dispose)
    already_running = _service_tasks()
    with pytest.raises(RuntimeError, match="signing keys unreadable"):
        await _start_and_stop(settings)
    assert _service_tasks() == already_running
    assert opened and set(map(id, disposed)) == set(map(id, opened))  # the app's, and the migration's


async def test_a_stop_that_fails_does_not_keep_the_others_from_stopping(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RateLimits, "close", _fail_to_close)
    already_running = _service_tasks()
    app = create_app(settings)
    with pytest.raises(ConnectionError):
        async with app.router.lifespan_context(app):
            assert _service_tasks() > already_running
    assert _service_tasks() == already_running


async def test_a_stop_that_fails_after_a_failed_start_does_not_hide_why_the_start_failed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuthServices, "start", _refuse_to_start)
    monkeypatch.setattr(RateLimits, "close", _fail_to_close)
    already_running = _service_tasks()
    with pytest.raises(RuntimeError, match="signing keys unreadable"):
        await _start_and_stop(settings)
    assert _service_tasks() == already_running
