"""Enforcing a tenant's limits on each authenticated request, and reporting its usage.

Request rates (per minute, per hour) use the `limits` moving window: exact, one entry per request
in the window. Predictions per day use its sliding-window counter: two counters per tenant however
large the quota, at the price of an approximation once a day has passed (the previous day's count is
weighted by how much of it still overlaps the window). Counters live in Redis when it is configured,
so every replica enforces one shared limit, and in memory otherwise.

A request refused by the per-minute limit does not count towards the hour; a request refused by
the hour has used a per-minute entry; one refused for concurrency has used a per-minute entry only.
If the counter store fails, requests are served unlimited for a few seconds (fail open) and the
failure is logged: limits protect capacity, they must not become the outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import structlog
from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import SlidingWindowCounterSupport
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.util import WindowStats
from redis.exceptions import RedisError

from qortex.audit import service as audit_service
from qortex.audit.service import AuditRecord, AuditWriter
from qortex.core import idempotency
from qortex.core.config import Settings
from qortex.core.database import Database, TenantScope
from qortex.core.errors import IdempotencyKeyInUse, InvalidInput, NotFound, Overloaded
from qortex.core.idempotency import IdempotentRequest
from qortex.limits import repository
from qortex.limits.errors import RateLimited, StorageQuotaExceeded
from qortex.limits.plans import FALLBACK_PLAN, PLANS, PlanLimits, effective_limits, validate_overrides
from qortex.limits.releases import Releasable
from qortex.limits.schemas import LimitUsage, TenantUsage
from qortex.limits.storage import LimitStorage
from qortex.security.principal import Principal
from qortex.tenants import repository as tenant_repository
from qortex.web.client_ip import client_ip
from qortex.web.middleware import request_method

log = structlog.get_logger("qortex.limits")

# Where a request's admission lives in the ASGI scope's state, for the middleware that finishes it.
STATE_KEY = "rate_limit"
# After the counter store fails, it is left alone this long (requests are served unlimited meanwhile).
STORE_RETRY_SECONDS = 5.0
_STORE_ERRORS = (StorageError, RedisError, OSError)
_MAX_AUDIT_MARKS = 10_000
_A = TypeVar("_A")
_B = TypeVar("_B")


@dataclass(slots=True)
class Admission:
    """One admitted (or refused) request: the RateLimit-* headers it answers with, and its concurrency slot."""

    headers: dict[str, str] = field(default_factory=dict)
    release: Callable[[], Awaitable[None]] | None = None

    async def finish(self) -> None:
        """Gives the concurrency slot back; safe to call more than once."""
        release, self.release = self.release, None
        if release is not None:
            await release()


@dataclass(slots=True)
class _AuditMark:
    written_at: float
    suppressed: int = 0


def _seconds_until(moment: float, now: float) -> int:
    return max(0, math.ceil(moment - now))


@dataclass(frozen=True, slots=True)
class DayCharge:
    """Predictions counted against a tenant's daily quota: `key` and `expiry` name its sliding-window counter."""

    key: str
    expiry: int
    count: int


@dataclass(slots=True)
class RequestQuota:
    """The tenant's quotas as one request meets them (predictions.service.Quota)."""

    limits: RateLimits
    request: Request
    principal: Principal
    charged: DayCharge | None = field(default=None, init=False)

    async def check(self, count: int) -> None:
        await self.limits.check_predictions(self.request, self.principal, count)

    async def charge(self, count: int) -> None:
        self.charged = await self.limits.charge_predictions(self.request, self.principal, count)

    async def refund(self) -> None:
        charged, self.charged = self.charged, None
        if charged is not None:
            await self.limits.refund_predictions(charged)

    def stored(self, n_bytes: int) -> None:
        self.limits.note_stored(self.principal.scope, n_bytes)


def _until_fits(
    limit: int, cost: int, previous: int, previous_ttl: float, current: int, current_ttl: float, *, window: int
) -> int:
    """Seconds until `cost` more fit a sliding-window counter (`get_sliding_window`'s answer), at least 1.

    The window counts `floor(previous * previous_ttl / window) + current`, the previous window's count fading
    as the current one goes by. The library's reset time is when the next single unit fades, too early for a
    request of several: a client honouring it would be refused again and again.
    """
    if current + cost <= limit:
        # The current count stays: wait until the previous one's weight leaves room, i.e. while it still weighs
        # more than `room` (floor(previous * ttl / window) <= room once previous * ttl / window < room + 1).
        room = limit - current - cost
        wait = previous_ttl - (room + 1) * window / previous if previous else 0.0
    else:
        # Only once the current window has ended, its count fading as the previous one from then on.
        ends_in = max(0.0, current_ttl - window)
        wait = ends_in + window - (limit - cost + 1) * window / current if current else ends_in
    # Strictly after the moment it fits (which floating point may put a hair early).
    return max(1, math.ceil(wait + 0.001))


def _headers(limit: int, stats: WindowStats, window_seconds: int, now: float) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, stats.remaining)),
        "RateLimit-Reset": str(_seconds_until(stats.reset_time, now)),
        "RateLimit-Policy": f"{limit};w={window_seconds}",
    }


def _usage(limit: int, stats: WindowStats, window_seconds: int) -> LimitUsage:
    remaining = max(0, stats.remaining)
    used = limit - remaining
    resets_at = datetime.fromtimestamp(stats.reset_time, UTC) if used else None
    return LimitUsage(limit=limit, used=used, remaining=remaining, window_seconds=window_seconds, resets_at=resets_at)


class _CountedPerWindow(RateLimitItem):
    """A limit whose counter is keyed by tenant and window only: the stock key also holds the amount, so
    changing a tenant's limit would start it on an empty counter (a lowered quota would not take)."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        parts = [k.decode() if isinstance(k, bytes) else str(k) for k in identifiers]
        return "/".join([self.namespace, *parts, str(self.multiples), self.GRANULARITY.name])


class _PerMinute(_CountedPerWindow, RateLimitItemPerMinute):
    pass


class _PerHour(_CountedPerWindow, RateLimitItemPerHour):
    pass


class _PerDay(_CountedPerWindow, RateLimitItemPerDay):
    pass


class RateLimits:
    """The process's limit enforcement: effective limits cached per tenant, counters in the chosen storage."""

    def __init__(self, *, settings: Settings, db: Database, audit: AuditWriter, storage: LimitStorage) -> None:
        self.enabled = settings.limits_enabled
        self.storage = storage
        self._db = db
        self._audit = audit
        self._global_batch_max = settings.batch_max_items
        self._cache_seconds = settings.limits_cache_seconds
        self._audit_interval = settings.limits_audit_interval_seconds
        self._moving = MovingWindowRateLimiter(storage.counters)
        self._sliding = SlidingWindowCounterRateLimiter(storage.counters)
        self._limits: dict[uuid.UUID, tuple[float, str, PlanLimits]] = {}
        self._stored: dict[uuid.UUID, tuple[float, int]] = {}
        self._audit_marks: dict[tuple[uuid.UUID, str], _AuditMark] = {}
        self._store_down_until = 0.0
        self._releases: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await asyncio.gather(*self._releases, return_exceptions=True)
        await self.storage.close()

    def forget(self, tenant_id: uuid.UUID) -> None:
        """Drops the cached limits and stored total of a tenant, e.g. after its plan or overrides changed."""
        self._limits.pop(tenant_id, None)
        self._stored.pop(tenant_id, None)

    async def limits_for(self, scope: TenantScope) -> tuple[str, PlanLimits]:
        """The tenant's plan name and effective limits, from the process cache when fresh."""
        now = time.monotonic()
        cached = self._limits.get(scope.tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        async with self._db.tenant_session(scope) as session:
            tenant = await tenant_repository.get_in_scope(session=session, scope=scope)
        plan, overrides = (tenant.plan, tenant.limits) if tenant is not None else (FALLBACK_PLAN, {})
        limits = effective_limits(plan=plan, overrides=overrides)
        self._limits[scope.tenant_id] = (now + self._cache_seconds, plan, limits)
        return plan, limits

    async def stored_bytes(self, scope: TenantScope, *, fresh: bool = False) -> int:
        now = time.monotonic()
        cached = self._stored.get(scope.tenant_id)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        async with self._db.tenant_session(scope) as session:
            total = await repository.stored_bytes(session=session, scope=scope)
        self._stored[scope.tenant_id] = (now + self._cache_seconds, total)
        return total

    @staticmethod
    def _minute(limits: PlanLimits) -> RateLimitItem:
        return _PerMinute(limits.requests_per_minute)

    @staticmethod
    def _hour(limits: PlanLimits) -> RateLimitItem:
        return _PerHour(limits.requests_per_hour)

    @staticmethod
    def _day(limits: PlanLimits) -> RateLimitItem:
        return _PerDay(limits.predictions_per_day)

    def _store_available(self) -> bool:
        return time.monotonic() >= self._store_down_until

    def _store_failed(self, error: Exception) -> None:
        self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
        log.warning(
            "limit_store_unavailable",
            storage=self.storage.kind,
            error_type=type(error).__name__,
            retry_in_seconds=STORE_RETRY_SECONDS,
        )

    async def admit(self, request: Request, principal: Principal) -> None:
        """Counts one request against the tenant's rates and takes a concurrency slot, or raises RateLimited."""
        if not self.enabled or getattr(request.state, STATE_KEY, None) is not None:
            return
        _, limits = await self.limits_for(principal.scope)
        if not self._store_available():
            return
        tenant = str(principal.tenant_id)
        admission = Admission()
        setattr(request.state, STATE_KEY, admission)
        try:
            minute, hour = self._minute(limits), self._hour(limits)
            minute_ok, token = await self._hit_and_take_slot(admission, tenant, minute, limits.concurrent_requests)
            if not minute_ok:
                await self._refuse_window(request, principal, admission, "requests_per_minute", minute, 60)
            if token is None:
                # Refused by the concurrency limit, which has no window: headers describing the minute's
                # (with room left) would invite an immediate retry. Retry-After alone says when.
                admission.headers = {}
            else:
                hour_ok, stats = await self._together(
                    self._moving.hit(hour, tenant, "requests"),
                    self._moving.get_window_stats(minute, tenant, "requests"),
                )
                admission.headers = _headers(limits.requests_per_minute, stats, 60, time.time())
                if not hour_ok:
                    await self._refuse_window(request, principal, admission, "requests_per_hour", hour, 3600)
        except _STORE_ERRORS as error:
            self._store_failed(error)
            return
        if token is None:
            await self._audit_refusal(request, principal, "concurrent_requests", limits.concurrent_requests)
            raise RateLimited(
                f"at most {limits.concurrent_requests} requests of this tenant may be in flight at once",
                limit="concurrent_requests",
                retry_after_seconds=1,
            )

    async def _hit_and_take_slot(
        self, admission: Admission, tenant: str, minute: RateLimitItem, concurrent: int
    ) -> tuple[bool, str | None]:
        """Counts the request and takes a concurrency slot; a slot taken is always handed to the admission's
        release, even when the other call fails, so a store error never strands a slot until its lease ends."""
        hit = self._moving.hit(minute, tenant, "requests")
        slot = self.storage.concurrency.acquire(tenant, concurrent)
        if self.storage.pool is None:
            token = await slot
            if token is not None:
                admission.release = self._releaser(tenant, token)
            return await hit, token
        slot_task = asyncio.ensure_future(slot)
        try:
            hit_outcome, slot_outcome = await asyncio.gather(hit, slot_task, return_exceptions=True)
        finally:
            # Also when the request is cancelled while the count is still on its way: a slot already taken
            # would otherwise stay held until its lease ends. One still being taken releases itself.
            if slot_task.done() and not slot_task.cancelled() and slot_task.exception() is None:
                token = slot_task.result()
                if token is not None:
                    admission.release = self._releaser(tenant, token)
        if isinstance(hit_outcome, BaseException):
            raise hit_outcome
        if isinstance(slot_outcome, BaseException):
            raise slot_outcome
        return hit_outcome, slot_outcome

    async def _together(self, first: Awaitable[_A], second: Awaitable[_B]) -> tuple[_A, _B]:
        """Both calls at once when they are Redis round trips; one after the other in memory, where that is cheaper."""
        if self.storage.pool is None:
            return await first, await second
        a, b = await asyncio.gather(first, second)
        return a, b

    def _releaser(self, tenant: str, token: str) -> Callable[[], Awaitable[None]]:
        concurrency = self.storage.concurrency

        async def release_now() -> None:
            await self._release(concurrency, tenant, token)

        if self.storage.pool is None:
            return release_now

        async def release_in_background() -> None:
            # A Redis round trip after the response would still hold up the connection's next request.
            self._in_background(release_now())

        return release_in_background

    async def _release(self, holder: Releasable, key: str, token: str) -> None:
        """Gives back a slot or a claim. A blip must not hold it for its whole lease (a tenant with few slots would be
        locked out; a retry of a request that failed would be refused 409, with no stored answer to replay), so a
        release that fails is retried in the background."""
        try:
            await holder.release(key, token)
        except _STORE_ERRORS as error:
            self._store_failed(error)
            holder.release_later(key, token)

    def _in_background(self, release: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(release)
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        return task

    async def _refuse_window(
        self,
        request: Request,
        principal: Principal,
        admission: Admission,
        name: str,
        item: RateLimitItem,
        window_seconds: int,
    ) -> None:
        now = time.time()
        stats = await self._moving.get_window_stats(item, str(principal.tenant_id), "requests")
        admission.headers = _headers(item.amount, stats, window_seconds, now)
        await self._audit_refusal(request, principal, name, item.amount)
        per = "minute" if window_seconds == 60 else "hour"
        raise RateLimited(
            f"the tenant's limit of {item.amount} requests per {per} (limit {name}) is used up",
            limit=name,
            retry_after_seconds=max(1, _seconds_until(stats.reset_time, now)),
        )

    async def admit_predictions(
        self,
        request: Request,
        principal: Principal,
        *,
        count: int,
        batch: bool,
        replay_of: IdempotentRequest | None = None,
    ) -> None:
        """Checks the batch size (`count` items, valid or not) and the stored-bytes quota.

        Today's prediction quota is checked by the service once it knows how many items it will predict
        (`check_predictions`) and charged when they are made (`charge_predictions`), so a request that
        fails, or a batch item answered with its own problem, costs nothing and takes no room. A request
        whose Idempotency-Key already has a stored answer is a replay: it creates nothing and is not checked.
        """
        if not self.enabled:
            return
        if replay_of is not None and await idempotency.replay(db=self._db, scope=principal.scope, request=replay_of):
            return
        _, limits = await self.limits_for(principal.scope)
        max_items = min(limits.max_batch_items, self._global_batch_max)
        if batch and count > max_items:
            # The server's cap (QORTEX_BATCH_MAX_ITEMS) bounds every plan: name whichever one binds.
            bound = "max_batch_items" if limits.max_batch_items <= self._global_batch_max else "the server's"
            raise InvalidInput(
                f"a batch holds at most {max_items} items for this tenant ({bound} limit), got {count}",
                errors=[{"loc": ["body", "items"], "msg": f"at most {max_items} items ({bound} limit)"}],
            )
        stored = await self.stored_bytes(principal.scope)
        if stored >= limits.stored_bytes:
            await self._audit_refusal(request, principal, "stored_bytes", limits.stored_bytes)
            raise StorageQuotaExceeded(
                f"the tenant stores {stored} bytes of predictions, its quota is {limits.stored_bytes} bytes "
                "(limit stored_bytes); the operator can raise it (qortex tenants limits)"
            )

    @asynccontextmanager
    async def running_alone(self, principal: Principal, request: IdempotentRequest | None) -> AsyncIterator[None]:
        """Runs a create request while no copy of it (same tenant and Idempotency-Key) runs, else refuses it 409.

        Held until the answer is committed, so copies sent at once run and are charged once; a copy arriving
        after that replays the stored answer. While the counter store is unavailable copies run side by side,
        and the database still stores only one of them.
        """
        if request is None:
            yield
            return
        # Hashed: the key is the client's text, and the counter store holds no tenant data.
        key = f"{principal.tenant_id}:{hashlib.sha256(request.key.encode()).hexdigest()}"
        token = await self._claim(principal, request, key)
        try:
            yield
        finally:
            if token is not None:
                await self._release_claim(key, token)

    async def _claim(self, principal: Principal, request: IdempotentRequest, key: str) -> str | None:
        """The claim's token; None when there is nothing to hold (the store is down, or the answer is stored)."""
        if not self._store_available():
            return None
        try:
            token = await self.storage.claims.claim(key)
        except _STORE_ERRORS as error:
            self._store_failed(error)
            return None
        if token is None and await idempotency.replay(db=self._db, scope=principal.scope, request=request) is None:
            raise IdempotencyKeyInUse(request.key)
        return token

    async def _release_claim(self, key: str, token: str) -> None:
        # On its own task, so a cancelled request still releases it; awaited, so a retry sent as soon as this
        # answer arrives finds the key free.
        await asyncio.shield(self._in_background(self._release(self.storage.claims, key, token)))

    def quota_for(self, request: Request, principal: Principal) -> RequestQuota:
        return RequestQuota(self, request, principal)

    def note_stored(self, scope: TenantScope, n_bytes: int) -> None:
        """Adds bytes just committed to the cached total, so a burst of writes cannot outrun the quota for the
        cache's lifetime (other processes see them at their next refresh)."""
        cached = self._stored.get(scope.tenant_id)
        if cached is not None:
            self._stored[scope.tenant_id] = (cached[0], cached[1] + n_bytes)

    async def check_predictions(self, request: Request, principal: Principal, count: int) -> None:
        """429 when `count` predictions no longer fit today's quota: tested before the engine runs, charging
        nothing (the charge afterwards decides races)."""
        await self._within_day(request, principal, count, charge=False)

    async def charge_predictions(self, request: Request, principal: Principal, count: int) -> DayCharge | None:
        """Charges `count` predictions, about to be stored, to today's quota; 429 if they no longer fit.

        Returns the charge, or None when nothing was counted (limits off, or the counter store unavailable).
        """
        day = await self._within_day(request, principal, count, charge=True)
        if day is None:
            return None
        return DayCharge(day.key_for(str(principal.tenant_id), "predictions"), day.get_expiry(), count)

    async def refund_predictions(self, charge: DayCharge) -> None:
        """Takes back a charge whose predictions were not stored, from the current day window (one made just
        before the window turned may stay, or be taken from the new window: the counters do not say which
        window a count went into).

        On its own task, so a request cancelled meanwhile still gives it back. If the counter store fails, the
        charge stays and the failure is logged.
        """
        await asyncio.shield(self._in_background(self._take_back(charge)))

    async def _take_back(self, charge: DayCharge) -> None:
        if not self._store_available():
            return
        try:
            await self.storage.counters.take_back(charge.key, charge.expiry, charge.count)
        except _STORE_ERRORS as error:
            self._store_failed(error)

    async def _within_day(
        self, request: Request, principal: Principal, count: int, *, charge: bool
    ) -> RateLimitItem | None:
        """The day limit that `count` predictions fit, None if they were not counted; RateLimited if they do not fit."""
        if not self.enabled or count <= 0:
            return None
        _, limits = await self.limits_for(principal.scope)
        if count > limits.predictions_per_day:
            # No wait makes room for it: a 429 would have the client retry for ever.
            raise InvalidInput(
                f"this request needs {count} predictions, more than the tenant's whole quota of "
                f"{limits.predictions_per_day} per day (limit predictions_per_day)",
                errors=[{"loc": ["body"], "msg": f"at most {limits.predictions_per_day} predictions per day"}],
            )
        if not self._store_available():  # counters unreachable: admitted uncounted for a few seconds
            return None
        tenant = str(principal.tenant_id)
        day = self._day(limits)
        try:
            if charge:
                fits = await self._sliding.hit(day, tenant, "predictions", cost=count)
            else:
                fits = await self._sliding.test(day, tenant, "predictions", cost=count)
            if fits:
                return day
            stats = await self._sliding.get_window_stats(day, tenant, "predictions")
            counters = cast(SlidingWindowCounterSupport, self.storage.counters)
            window = await counters.get_sliding_window(day.key_for(tenant, "predictions"), day.get_expiry())
        except _STORE_ERRORS as error:
            self._store_failed(error)
            return None
        now = time.time()
        admission = getattr(request.state, STATE_KEY, None)
        if isinstance(admission, Admission):
            admission.headers = _headers(day.amount, stats, 86_400, now)
        await self._audit_refusal(request, principal, "predictions_per_day", day.amount)
        raise RateLimited(
            f"this request needs {count} prediction(s); {max(0, stats.remaining)} of the tenant's "
            f"{day.amount} predictions per day (limit predictions_per_day) remain",
            limit="predictions_per_day",
            retry_after_seconds=_until_fits(day.amount, count, *window, window=day.get_expiry()),
        )

    async def _audit_refusal(self, request: Request, principal: Principal, name: str, limit: int) -> None:
        """Writes a `rate_limited` event, at most one per credential and limit per interval; it counts the others."""
        now = time.monotonic()
        key = (principal.credential_id, name)
        mark = self._audit_marks.get(key)
        if mark is not None and now - mark.written_at < self._audit_interval:
            mark.suppressed += 1
            return
        suppressed = mark.suppressed if mark is not None else 0
        if len(self._audit_marks) >= _MAX_AUDIT_MARKS:
            cutoff = now - self._audit_interval
            self._audit_marks = {k: m for k, m in self._audit_marks.items() if m.written_at >= cutoff}
        self._audit_marks[key] = _AuditMark(written_at=now)
        record = AuditRecord(
            action="rate_limited",
            outcome="denied",
            actor_kind=principal.actor_kind,
            actor_id=principal.actor_id,
            target_type="limit",
            target_id=name,
            request_id=getattr(request.state, "request_id", None),
            client_ip=client_ip(request),
            details={
                "limit": limit,
                "method": request_method(request.scope),
                "path": request.url.path,
                "refusals_not_logged_since_previous_event": suppressed,
            },
        )
        await self._audit.write_refusal(principal.scope, record)

    async def usage(self, principal: Principal) -> TenantUsage:
        """Current use of every limit of the caller's tenant (this request included)."""
        plan, limits = await self.limits_for(principal.scope)
        tenant = str(principal.tenant_id)
        minute, hour, day = self._minute(limits), self._hour(limits), self._day(limits)
        stored = await self.stored_bytes(principal.scope, fresh=True)
        try:
            minute_stats = await self._moving.get_window_stats(minute, tenant, "requests")
            hour_stats = await self._moving.get_window_stats(hour, tenant, "requests")
            day_stats = await self._sliding.get_window_stats(day, tenant, "predictions")
            in_flight = await self.storage.concurrency.current(tenant)
        except _STORE_ERRORS as error:
            self._store_failed(error)
            raise Overloaded(
                "the limit counters are unavailable; retry shortly", retry_after_seconds=int(STORE_RETRY_SECONDS)
            ) from error
        return TenantUsage(
            plan=plan,
            requests_per_minute=_usage(limits.requests_per_minute, minute_stats, 60),
            requests_per_hour=_usage(limits.requests_per_hour, hour_stats, 3600),
            predictions_per_day=_usage(limits.predictions_per_day, day_stats, 86_400),
            concurrent_requests=LimitUsage(
                limit=limits.concurrent_requests,
                used=in_flight,
                remaining=max(0, limits.concurrent_requests - in_flight),
            ),
            stored_bytes=LimitUsage(
                limit=limits.stored_bytes, used=stored, remaining=max(0, limits.stored_bytes - stored)
            ),
            max_batch_items=min(limits.max_batch_items, self._global_batch_max),
        )


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's plan, its own overrides, and the limits that result."""

    plan: str
    overrides: dict[str, int]
    effective: PlanLimits


async def tenant_limits(*, db: Database, scope: TenantScope) -> TenantLimits:
    async with db.tenant_session(scope) as session:
        tenant = await tenant_repository.get_in_scope(session=session, scope=scope)
    if tenant is None:
        raise NotFound("tenant not found")
    return TenantLimits(tenant.plan, dict(tenant.limits), effective_limits(plan=tenant.plan, overrides=tenant.limits))


async def set_tenant_limits(
    *,
    db: Database,
    scope: TenantScope,
    plan: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    unset: Collection[str] = (),
) -> PlanLimits:
    """Sets a tenant's plan and/or its validated overrides, audited in the same transaction.

    `overrides` replaces them all; then `unset` drops some and `changes` sets some, applied to the stored ones
    under the same row lock, so concurrent changes of different limits all take. An operator's act (the CLI);
    each process applies it within QORTEX_LIMITS_CACHE_SECONDS.
    """
    if plan is not None and plan not in PLANS:
        raise InvalidInput(f"unknown plan {plan!r}; known: {', '.join(PLANS)}")
    checked = validate_overrides(overrides) if overrides is not None else None
    checked_changes = validate_overrides(changes or {})
    async with db.tenant_session(scope, write=True) as session:
        tenant = await tenant_repository.get_in_scope(session=session, scope=scope, for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        before = {"plan": tenant.plan, "overrides": dict(tenant.limits)}
        if plan is not None:
            tenant.plan = plan
        if checked is not None or unset or checked_changes:
            kept = checked if checked is not None else tenant.limits
            tenant.limits = {name: value for name, value in kept.items() if name not in unset} | checked_changes
        after = {"plan": tenant.plan, "overrides": dict(tenant.limits)}
        if after != before:
            record = AuditRecord(
                action="tenant.limits_changed",
                actor_kind="operator",
                target_type="tenant",
                target_id=str(tenant.id),
                details={name: {"from": before[name], "to": after[name]} for name in after},
            )
            await audit_service.append(session=session, scope=scope, records=[record])
        return effective_limits(plan=tenant.plan, overrides=tenant.limits)
