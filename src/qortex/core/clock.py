"""The one source of the current time, so tests and storage agree on UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is outside the supported range once converted to UTC") from None


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_8601_only(value: object) -> object:
    # Pydantic would read a number (or a string of digits) as Unix seconds or milliseconds: a client that
    # sent one meant something else, so it is refused rather than guessed at.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time with a timezone, such as 2026-01-31T12:00:00Z")
    return value


# A client-supplied instant: ISO 8601 with a timezone, which must exist in UTC (stored values are UTC).
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only), AfterValidator(_to_utc)]

# A time of day, then a space and what can only be a positive UTC offset.
_OFFSET_PLUS_READ_AS_SPACE = re.compile(r"(.*\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)")


def _plus_restored(value: object) -> object:
    # A query string reads `+` as a space, and curl and browsers send `12:00:00+01:00` as typed: a space is
    # never valid before an offset, so it is that `+`.
    if isinstance(value, str) and (match := _OFFSET_PLUS_READ_AS_SPACE.fullmatch(value)):
        return f"{match[1]}+{match[2]}"
    return value


# A `UtcDatetime` given in a query string.
QueryUtcDatetime = Annotated[UtcDatetime, BeforeValidator(_plus_restored)]
