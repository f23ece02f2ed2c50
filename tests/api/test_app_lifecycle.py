"""The app's lifespan: what it changes in the process is undone when it stops."""

from __future__ import annotations

import gc
import weakref

import pytest

from qortex.api import YOUNG_GC_THRESHOLD, create_app
from qortex.core.config import Settings


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


async def test_the_app_refuses_to_start_in_production_on_the_embedded_defaults(settings: Settings) -> None:
    """Served by any ASGI server (not only `qortex serve`), production needs an explicit database and keys."""
    app = create_app(settings.model_copy(update={"env": "production", "database_url": None}))
    with pytest.raises(RuntimeError, match="QORTEX_DATABASE_URL must be set explicitly in production"):
        async with app.router.lifespan_context(app):
            pass
