"""The hash of one audit event: SHA-256 over its canonical JSON and the previous event's hash."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

GENESIS = "0" * 64

# The fields the hash covers, with the type each one reads back as: every stored field but the row's own id,
# which is not part of the chain, and the hash itself.
HASHED_FIELDS: dict[str, type] = {
    "tenant_id": uuid.UUID,
    "seq": int,
    "occurred_at": datetime,
    "action": str,
    "outcome": str,
    "actor_kind": str,
    "actor_id": str,
    "target_type": str,
    "target_id": str,
    "request_id": str,
    "client_ip": str,
    "details": dict,
    "prev_hash": str,
}


def event_hash(event: Mapping[str, Any]) -> str:
    """`event`: the event's fields by column name."""
    fields = {name: event[name] for name in HASHED_FIELDS}
    fields["tenant_id"] = str(fields["tenant_id"])
    fields["occurred_at"] = fields["occurred_at"].isoformat(timespec="microseconds")
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
