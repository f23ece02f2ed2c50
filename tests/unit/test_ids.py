"""UUIDv7 ids: well-formed, strictly increasing, and never far ahead of the clock."""

from __future__ import annotations

import time
import uuid

import pytest

from qortex.core import ids
from qortex.core.ids import new_id, new_ids


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


def test_ids_are_version_7_rfc_9562() -> None:
    for value in [new_id(), *new_ids(3)]:
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_a_burst_strictly_increases_and_stays_with_the_clock() -> None:
    burst = [new_id() for _ in range(10_000)] + new_ids(10_000) + [new_id()]
    assert burst == sorted(burst)
    assert len(set(burst)) == len(burst)
    # A whole-millisecond counter would put the last of 20,001 ids about 20 s ahead.
    assert _millis(burst[-1]) <= time.time_ns() // 1_000_000 + 5


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    before = new_id()
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_000_000_000)  # 1970, far in the past
    after = [new_id(), *new_ids(2)]
    assert [before, *after] == sorted([before, *after])
    assert _millis(after[0]) >= _millis(before)


def test_no_ids_asked_for_none_given() -> None:
    assert new_ids(0) == []


def test_random_part_differs_between_ids() -> None:
    low_bits = {value.int & ((1 << 62) - 1) for value in new_ids(1000)}
    assert len(low_bits) == 1000
