"""The query parameters every list route takes: `?limit=` (1 to 500, default 50) and an opaque `?cursor=`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_PAGE = 500

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}")]
PageCursor = Annotated[str | None, Query(max_length=64, description="The next_cursor of the previous page")]
