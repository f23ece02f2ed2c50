"""Passwords: argon2id with the configured cost, a length policy, rehash on changed parameters."""

from __future__ import annotations

import pytest

from qortex.core.config import Settings
from qortex.security.passwords import MAX_LENGTH, MIN_LENGTH, Passwords, policy_problem

CHEAP = {"time_cost": 1, "memory_kib": 64, "parallelism": 1}


def test_a_hash_is_argon2id_with_the_configured_cost_and_verifies_only_its_password() -> None:
    passwords = Passwords(**CHEAP)
    stored = passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert passwords.verify(stored, "correct horse battery staple")
    assert not passwords.verify(stored, "correct horse battery stapl")
    assert not passwords.verify("not a hash", "correct horse battery staple")
    assert passwords.hash("correct horse battery staple") != stored  # salted


def test_settings_choose_the_cost() -> None:
    settings = Settings(password_time_cost=2, password_memory_kib=128, password_parallelism=2)
    assert Passwords.from_settings(settings).hash("x" * 12).startswith("$argon2id$v=19$m=128,t=2,p=2$")


def test_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    old = Passwords(time_cost=2, memory_kib=64, parallelism=1).hash("correct horse battery staple")
    current = Passwords(**CHEAP)
    assert current.needs_rehash(old)
    assert not current.needs_rehash(current.hash("correct horse battery staple"))
    assert current.needs_rehash("garbage")


async def test_an_unknown_account_is_verified_against_a_dummy_hash_and_refused() -> None:
    passwords = Passwords(**CHEAP)
    assert await passwords.verify_async(None, "anything at all") is False
    stored = await passwords.hash_async("correct horse battery staple")
    assert await passwords.verify_async(stored, "correct horse battery staple") is True


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("a" * (MIN_LENGTH - 1), False),
        ("a" * MIN_LENGTH, True),
        ("a" * MAX_LENGTH, True),
        ("a" * (MAX_LENGTH + 1), False),
    ],
)
def test_length_policy(password: str, ok: bool) -> None:
    assert (policy_problem(password) is None) is ok
