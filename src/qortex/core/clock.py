"""The one source of the current time, so tests and storage agree on UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is outside the supported range once converted to UTC") from None


# A client-supplied instant: it must carry a timezone and exist in UTC (stored values are UTC).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
