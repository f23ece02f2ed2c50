"""The hash of one audit event: SHA-256 over its canonical JSON and the previous event's hash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from qortex.audit.models import AuditEvent

GENESIS = "0" * 64


def event_hash(event: AuditEvent) -> str:
    fields: dict[str, Any] = {
        "tenant_id": str(event.tenant_id),
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "action": event.action,
        "outcome": event.outcome,
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
