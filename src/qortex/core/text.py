"""Constraints on free text that reaches storage, queries and logs."""

from __future__ import annotations

# Control characters (NUL above all, which PostgreSQL text cannot hold) are refused, not stripped;
# C1 controls too (U+0080-U+009F): some terminals act on them (U+009B starts an escape sequence).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
