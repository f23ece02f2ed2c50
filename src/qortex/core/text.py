"""Constraints on free text that reaches storage, queries and logs."""

from __future__ import annotations

import unicodedata

# Refused, not stripped: control characters (C0, DEL, C1; PostgreSQL text cannot hold NUL), line and
# paragraph separators (they split log lines), and bidirectional formatting controls (they make a name
# display as something else in terminals and consoles). Joiners stay allowed: emoji and scripts need them.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]*$"


def strip_spaces(value: object) -> object:
    """Strips ASCII spaces only: str.strip() would also remove U+0085 or U+2028 at the ends, which the
    pattern above must refuse, not silently drop."""
    return value.strip(" ") if isinstance(value, str) else value


def require_visible(value: str) -> str:
    """Refuses text made only of spaces and invisible format characters (a BOM, a soft hyphen): it would be
    stored and listed as a name nobody can read or type back."""
    if all(char.isspace() or unicodedata.category(char) == "Cf" for char in value):
        raise ValueError("must contain a visible character")
    return value
