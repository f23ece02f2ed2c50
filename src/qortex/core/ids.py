"""Time-ordered identifiers (UUIDv7, RFC 9562), so primary keys sort by creation time and index well.

The 12 bits after the millisecond timestamp hold the sub-millisecond fraction (RFC 9562, 6.2
method 3). Ids made in one process strictly increase: when the clock has not moved on, the next id
takes the next 1/4096 ms step. A burst therefore runs ahead of the clock only beyond 4,096 ids per
millisecond, where a counter in whole milliseconds would put every id of a busy minute hours into
the future and sort ids made after a restart before older ones.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_STEPS_PER_MS = 4096
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_RANDOM_BITS = (1 << 62) - 1

_lock = threading.Lock()
_last_stamp = 0  # milliseconds << 12 | sub-millisecond step, of the last id handed out


def _reserve(count: int) -> int:
    """Returns the first of `count` consecutive stamps, all later than any handed out before."""
    global _last_stamp
    now = time.time_ns()
    millis, nanos = divmod(now, 1_000_000)
    stamp = millis * _STEPS_PER_MS + nanos * _STEPS_PER_MS // 1_000_000
    with _lock:
        first = max(stamp, _last_stamp + 1)
        _last_stamp = first + count - 1
    return first


def _compose(stamp: int, random: int) -> uuid.UUID:
    millis, step = divmod(stamp, _STEPS_PER_MS)
    return uuid.UUID(int=(millis << 80) | (step << 64) | _VERSION_AND_VARIANT | (random & _RANDOM_BITS))


def new_ids(count: int) -> list[uuid.UUID]:
    """`count` increasing ids, with one clock read and one read of the system's random source."""
    if count <= 0:
        return []
    first = _reserve(count)
    random = os.urandom(8 * count)
    return [_compose(first + i, int.from_bytes(random[8 * i : 8 * i + 8], "big")) for i in range(count)]


def new_id() -> uuid.UUID:
    return _compose(_reserve(1), int.from_bytes(os.urandom(8), "big"))
