"""The background sweep keeps running on its interval, and a failed pass does not end it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from qortex.core import housekeeping as housekeeping_module
from qortex.core.database import Database, TenantScope
from qortex.core.housekeeping import Housekeeping, Sweep


async def test_sweeping_goes_on_after_a_failed_pass_and_stops_when_told(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    calls = 0
    third_pass = asyncio.Event()

    async def tenant_scopes() -> list[TenantScope]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        if calls == 3:
            third_pass.set()
        return []

    async def count_nothing(*, db: Database, scope: TenantScope) -> int:
        return 0

    housekeeping = Housekeeping(
        db=db, tenant_scopes=tenant_scopes, sweeps={"nothing": count_nothing}, interval_seconds=0.01
    )
    housekeeping.start()
    await asyncio.wait_for(third_pass.wait(), timeout=5)
    await housekeeping.stop()
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at
    await db.dispose()


async def test_a_sweep_failing_for_one_tenant_does_not_stop_the_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    broken, healthy = TenantScope(uuid.uuid4()), TenantScope(uuid.uuid4())
    swept: list[tuple[str, uuid.UUID]] = []

    async def tenant_scopes() -> list[TenantScope]:
        return [broken, healthy]

    def counting(kind: str) -> Sweep:
        async def sweep(*, db: Database, scope: TenantScope) -> int:
            if scope == broken and kind == "first":
                raise ConnectionError("lock timeout")
            swept.append((kind, scope.tenant_id))
            return 1

        return sweep

    housekeeping = Housekeeping(
        db=db,
        tenant_scopes=tenant_scopes,
        sweeps={"first": counting("first"), "second": counting("second")},
        interval_seconds=3600,
    )
    warnings: list[tuple[str, dict[str, str]]] = []
    # The module's own logger, not the global configuration: another test may have set its level above warning.
    monkeypatch.setattr(
        housekeeping_module, "log", SimpleNamespace(warning=lambda event, **kw: warnings.append((event, kw)))
    )
    assert await housekeeping.sweep() == {"first": 1, "second": 2}
    assert swept == [("second", broken.tenant_id), ("first", healthy.tenant_id), ("second", healthy.tenant_id)]
    assert warnings == [
        ("sweep_failed", {"kind": "first", "tenant_id": str(broken.tenant_id), "error_type": "ConnectionError"})
    ]
    await db.dispose()
