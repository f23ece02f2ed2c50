"""The embedded database holds every tenant's data: only the process's user may read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from qortex.core.database import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_and_its_wal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path}/q.db")
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        files = [tmp_path / name for name in ("q.db", "q.db-wal", "q.db-shm")]
        assert all(path.exists() for path in files)
        assert [mode(path) for path in files] == [0o600] * 3
        await db.dispose()
    finally:
        os.umask(previous)


async def test_an_existing_readable_database_is_made_private(tmp_path: Path) -> None:
    for name in ("q.db", "q.db-wal"):
        (tmp_path / name).touch(mode=0o644)
        (tmp_path / name).chmod(0o644)
    db = Database(f"sqlite:///{tmp_path}/q.db")
    assert mode(tmp_path / "q.db") == mode(tmp_path / "q.db-wal") == 0o600
    await db.dispose()


def test_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    Database(f"sqlite:///{tmp_path}/absent/q.db")
    assert not (tmp_path / "absent").exists()


def test_tightening_takes_permissions_away_and_never_adds_any(tmp_path: Path) -> None:
    (tmp_path / "q.db").touch()
    (tmp_path / "q.db").chmod(0o444)
    Database(f"sqlite:///{tmp_path}/q.db")
    assert mode(tmp_path / "q.db") == 0o400
