"""Constraints on free text that reaches storage, queries and logs."""

from __future__ import annotations

# Control characters (NUL above all, which PostgreSQL text cannot hold) are refused, not stripped.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
