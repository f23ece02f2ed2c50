"""Login throttling: exponential backoff after the free attempts, per account and per address."""

from __future__ import annotations

import asyncio

import pytest

from qortex.security.throttle import LoginThrottle, LoginThrottled, MemoryFailureStore, backoff_seconds


def test_backoff_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [backoff_seconds(n, free=5, cap=900) for n in range(4, 9)] == [0, 1, 2, 4, 8]
    assert backoff_seconds(100, free=5, cap=900) == 900


async def test_an_account_in_backoff_is_refused_with_retry_after_and_a_success_clears_it() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=2, ip_free=100, max_backoff_seconds=900)
    for _ in range(2):
        await throttle.admit(identifier="Alice", client_ip="10.0.0.1")
    with pytest.raises(LoginThrottled) as refused:
        await throttle.admit(identifier="alice", client_ip="10.0.0.2")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    await throttle.admit(identifier="bob", client_ip="10.0.0.1")  # the address is still under its budget
    await throttle.succeeded(identifier="alice", client_ip="10.0.0.2")
    await throttle.admit(identifier="alice", client_ip="10.0.0.2")


async def test_concurrent_guesses_at_one_account_count_before_any_password_is_checked() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=5, ip_free=1000, max_backoff_seconds=900)
    answers = await asyncio.gather(
        *(throttle.admit(identifier="alice", client_ip=f"10.0.0.{n}") for n in range(40)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 5
    assert all(isinstance(answer, LoginThrottled) for answer in answers if answer is not None)


async def test_an_address_spraying_many_accounts_is_throttled() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=5, ip_free=3, max_backoff_seconds=900)
    for n in range(3):
        await throttle.admit(identifier=f"user{n}", client_ip="10.0.0.9")
    with pytest.raises(LoginThrottled):
        await throttle.admit(identifier="someone-new", client_ip="10.0.0.9")


async def test_successful_logins_from_one_address_never_throttle_it() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=5, ip_free=3, max_backoff_seconds=900)
    for n in range(10):
        await throttle.admit(identifier=f"user{n}", client_ip="10.0.0.9")
        await throttle.succeeded(identifier=f"user{n}", client_ip="10.0.0.9")


async def test_addresses_of_one_ipv6_slash_64_share_a_budget() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=100, ip_free=3, max_backoff_seconds=900)
    for n in range(1, 4):
        await throttle.admit(identifier=f"user{n}", client_ip=f"2001:db8:1:2::{n}")
    with pytest.raises(LoginThrottled):
        await throttle.admit(identifier="user9", client_ip="2001:db8:1:2:ffff::9")
    await throttle.admit(identifier="user9", client_ip="2001:db8:1:3::1")  # the next /64 is someone else


async def test_an_ipv4_mapped_address_counts_as_its_ipv4_address() -> None:
    throttle = LoginThrottle(MemoryFailureStore(), account_free=100, ip_free=2, max_backoff_seconds=900)
    for client_ip in ("192.0.2.7", "::ffff:192.0.2.7"):
        await throttle.admit(identifier="someone", client_ip=client_ip)
    with pytest.raises(LoginThrottled):
        await throttle.admit(identifier="someone-else", client_ip="192.0.2.7")


async def test_concurrent_guesses_at_many_accounts_from_one_address_share_its_budget() -> None:
    """Password spraying sends its guesses at once: the address's budget must see them before any fails."""
    throttle = LoginThrottle(MemoryFailureStore(), account_free=5, ip_free=3, max_backoff_seconds=900)
    answers = await asyncio.gather(
        *(throttle.admit(identifier=f"user{n}", client_ip="10.0.0.9") for n in range(40)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 3
    assert all(isinstance(answer, LoginThrottled) for answer in answers if answer is not None)
