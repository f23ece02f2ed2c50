"""Login throttling: exponential backoff after the free failures, per account and per address."""

from __future__ import annotations

import pytest

from qortex.security.throttle import LoginThrottle, LoginThrottled, MemoryFailureStore, backoff_seconds


def test_backoff_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [backoff_seconds(n, free=5, cap=900) for n in range(4, 9)] == [0, 1, 2, 4, 8]
    assert backoff_seconds(100, free=5, cap=900) == 900


async def test_an_account_in_backoff_is_refused_with_retry_after_and_a_success_clears_it() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=2, ip_free=100, max_backoff_seconds=900)
    for _ in range(4):
        await throttle.failed(identifier="Alice", client_ip="10.0.0.1")
    with pytest.raises(LoginThrottled) as refused:
        await throttle.check(identifier="alice", client_ip="10.0.0.2")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] in {"4", "3"}
    await throttle.check(identifier="bob", client_ip="10.0.0.1")  # the address is still under its budget
    await throttle.succeeded(identifier="alice")
    await throttle.check(identifier="alice", client_ip="10.0.0.2")


async def test_an_address_spraying_many_accounts_is_throttled() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=5, ip_free=3, max_backoff_seconds=900)
    for n in range(3):
        await throttle.failed(identifier=f"user{n}", client_ip="10.0.0.9")
    with pytest.raises(LoginThrottled):
        await throttle.check(identifier="someone-new", client_ip="10.0.0.9")
