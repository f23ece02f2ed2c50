"""Plans and their limits, and a tenant's effective limits: its plan's, with its own overrides applied.

A plan is picked by `Tenant.plan`; `Tenant.limits` overrides single values by name. An unknown plan
falls back to the most restrictive one, so a typo never grants more than was paid for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from qortex.core.errors import InvalidInput

log = structlog.get_logger("qortex.limits")

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """Everything a plan bounds; every value is a positive integer."""

    requests_per_minute: int
    requests_per_hour: int
    predictions_per_day: int
    concurrent_requests: int
    max_batch_items: int
    stored_bytes: int


LIMIT_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PlanLimits))

FALLBACK_PLAN = "free"

PLANS: dict[str, PlanLimits] = {
    "free": PlanLimits(
        requests_per_minute=60,
        requests_per_hour=1_000,
        predictions_per_day=1_000,
        concurrent_requests=2,
        max_batch_items=50,
        stored_bytes=50 * MIB,
    ),
    "standard": PlanLimits(
        requests_per_minute=600,
        requests_per_hour=20_000,
        predictions_per_day=100_000,
        concurrent_requests=10,
        max_batch_items=1_000,
        stored_bytes=5 * GIB,
    ),
    "enterprise": PlanLimits(
        requests_per_minute=6_000,
        requests_per_hour=200_000,
        predictions_per_day=2_000_000,
        concurrent_requests=100,
        max_batch_items=10_000,
        stored_bytes=100 * GIB,
    ),
}


# A limit is stored, hashed into the audit chain and compared as a signed 64-bit integer.
# High enough for "unlimited" (a petabyte of storage, ten billion requests a second), low enough for the
# counters: the limits library's Redis scripts fail from about 1e17, and a failing store serves every
# tenant of the replica unlimited for a few seconds.
MAX_LIMIT_VALUE = 10**15


def _is_limit_value(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LIMIT_VALUE


def validate_overrides(raw: Mapping[str, Any]) -> dict[str, int]:
    """Checks overrides a client submits: known names, positive integers; raises InvalidInput otherwise."""
    errors = []
    for name, value in raw.items():
        if name not in LIMIT_NAMES:
            errors.append({"loc": ["body", "limits", name], "msg": f"unknown limit; known: {', '.join(LIMIT_NAMES)}"})
        elif not _is_limit_value(value):
            errors.append({"loc": ["body", "limits", name], "msg": f"must be an integer from 1 to {MAX_LIMIT_VALUE}"})
    if errors:
        named = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in errors)
        raise InvalidInput(f"invalid limit overrides: {named}", errors=errors)
    return {name: int(value) for name, value in raw.items()}


def effective_limits(*, plan: str, overrides: Mapping[str, Any] | None) -> PlanLimits:
    """The plan's limits with the tenant's valid overrides applied; invalid stored overrides are skipped and logged."""
    base = PLANS.get(plan)
    if base is None:
        log.warning("unknown_plan", plan=plan, fallback=FALLBACK_PLAN)
        base = PLANS[FALLBACK_PLAN]
    valid: dict[str, int] = {}
    for name, value in (overrides or {}).items():
        if name in LIMIT_NAMES and _is_limit_value(value):
            valid[name] = int(value)
        else:
            log.warning("invalid_limit_override", limit=name)
    return dataclasses.replace(base, **valid) if valid else base
