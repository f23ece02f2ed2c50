"""The background sweep keeps running on its interval, and a failed pass does not end it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qortex.core.database import Database, TenantScope
from qortex.core.housekeeping import Housekeeping


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
