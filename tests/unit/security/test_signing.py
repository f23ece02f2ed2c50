"""Request signing: the canonical string, verification that names each fault, and the nonce stores."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import require_service

from qortex.core.database import Database, TenantScope
from qortex.security import seen_signatures, signing

SECRET = "qxs_test-secret"
NOW = 1_800_000_000.0
REDIS_URL = os.environ.get("QORTEX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TENANT = TenantScope(uuid.uuid4())

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])
targets = st.from_regex(r"/v1/[a-z0-9/%-]{0,40}(\?[a-z0-9=&%-]{1,40})?", fullmatch=True)


def verify(**overrides: object) -> signing.VerifiedSignature:
    request: dict[str, object] = {
        "secret": SECRET,
        "method": "POST",
        "target": "/v1/predictions?wait=true",
        "body": b'{"values": [1, 2, 3]}',
        "timestamp": str(int(NOW)),
        "now": NOW,
    }
    request.update(overrides)
    if "signature" not in request:
        request["signature"] = signing.sign(
            secret=str(request["secret"]),
            method=str(request["method"]),
            target=str(request["target"]),
            timestamp=str(request["timestamp"]),
            body=request["body"],  # type: ignore[arg-type]
        )
    return signing.verify(**request)  # type: ignore[arg-type]


def test_the_signature_is_the_documented_hmac_over_four_lines() -> None:
    body = b'{"a": 1}'
    expected = hmac.new(
        SECRET.encode(),
        b"POST\n/v1/x?b=2&a=1\n1800000000\n" + hashlib.sha256(body).hexdigest().encode(),
        hashlib.sha256,
    ).hexdigest()
    got = signing.sign(secret=SECRET, method="post", target="/v1/x?b=2&a=1", timestamp="1800000000", body=body)
    assert got == f"v1={expected}"


def test_the_target_is_the_path_alone_when_the_query_is_empty() -> None:
    assert signing.request_target(b"/v1/models", b"") == "/v1/models"
    assert signing.request_target(b"/v1/a%20b", b"limit=5") == "/v1/a%20b?limit=5"


@given(method=methods, target=targets, body=st.binary(max_size=256), skew=st.integers(-300, 300))
def test_a_correct_signature_within_the_window_verifies(method: str, target: str, body: bytes, skew: int) -> None:
    verified = verify(method=method, target=target, body=body, timestamp=str(int(NOW) + skew))
    assert verified.signature.startswith("v1=")
    # Remembered as long as the timestamp stays acceptable, so a replay can never outlive its nonce.
    assert verified.nonce_ttl_seconds >= skew + signing.WINDOW_SECONDS


@given(body=st.binary(min_size=1, max_size=128), data=st.data())
def test_changing_any_byte_of_the_body_breaks_the_signature(body: bytes, data: st.DataObject) -> None:
    good = signing.sign(secret=SECRET, method="POST", target="/v1/p", timestamp=str(int(NOW)), body=body)
    index = data.draw(st.integers(0, len(body) - 1))
    flipped = body[:index] + bytes([body[index] ^ data.draw(st.integers(1, 255))]) + body[index + 1 :]
    with pytest.raises(signing.SignatureMismatch):
        verify(method="POST", target="/v1/p", body=flipped, signature=good)


@given(target=targets, other=targets)
def test_a_signature_for_one_target_fails_for_another(target: str, other: str) -> None:
    good = signing.sign(secret=SECRET, method="GET", target=target, timestamp=str(int(NOW)), body=b"")
    if other == target:
        assert verify(method="GET", target=other, body=b"", signature=good)
    else:
        with pytest.raises(signing.SignatureMismatch):
            verify(method="GET", target=other, body=b"", signature=good)


def test_another_method_or_secret_or_timestamp_fails() -> None:
    good = signing.sign(secret=SECRET, method="POST", target="/v1/p", timestamp=str(int(NOW)), body=b"{}")
    for change in ({"method": "PUT"}, {"secret": "qxs_other"}, {"timestamp": str(int(NOW) + 1)}):
        with pytest.raises(signing.SignatureMismatch):
            verify(target="/v1/p", body=b"{}", signature=good, **change)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_a_timestamp_outside_the_window_is_stale(skew: int) -> None:
    with pytest.raises(signing.TimestampStale, match="allowed window is 300 s"):
        verify(timestamp=str(int(NOW) + skew))


@pytest.mark.parametrize("timestamp", ["1800000000.5", "-1", "soon", "1e9", "9" * 20, "\u00b2", "180000000\u0660"])
def test_a_timestamp_that_is_not_whole_unix_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(signing.TimestampStale, match="whole seconds"):
        verify(timestamp=timestamp, signature="v1=00")


@pytest.mark.parametrize(
    ("timestamp", "signature", "named"),
    [(None, "v1=00", "X-Qortex-Timestamp"), (str(int(NOW)), None, "X-Qortex-Signature"), ("", "", "and")],
)
def test_missing_headers_are_named(timestamp: str | None, signature: str | None, named: str) -> None:
    with pytest.raises(signing.SignatureMissing, match=named):
        verify(timestamp=timestamp, signature=signature)


@pytest.mark.parametrize("signature", ["v2=abc", "deadbeef", "v1=", "v1=" + "0" * 64, "v1=é"])
def test_malformed_or_wrong_signatures_do_not_match(signature: str) -> None:
    with pytest.raises(signing.SignatureMismatch):
        verify(signature=signature)


def test_every_refusal_is_a_401_problem_with_its_own_type() -> None:
    kinds = [signing.SignatureMissing, signing.TimestampStale, signing.SignatureMismatch, signing.SignatureReplayed]
    assert {kind.status for kind in kinds} == {401}
    assert len({kind("x").type for kind in kinds}) == len(kinds)


def test_generated_secrets_are_long_and_distinct() -> None:
    secrets = {signing.generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("qxs_") and len(s) >= 40 for s in secrets)


async def test_the_redis_store_is_shared_and_refuses_replays() -> None:
    first, second = signing.RedisNonceStore(REDIS_URL), signing.RedisNonceStore(REDIS_URL)
    try:
        try:
            await asyncio.wait_for(first.claim(TENANT, f"probe-{uuid.uuid4().hex}", 1), timeout=3)
        except Exception as error:
            require_service("Redis", f"{type(error).__name__}: {error}")
        nonce = f"test-{uuid.uuid4().hex}"
        assert await first.claim(TENANT, nonce, 2)
        assert not await second.claim(TENANT, nonce, 2)  # another replica sees it
        assert not await first.claim(TENANT, nonce, 2)
        assert await first.claim(TenantScope(uuid.uuid4()), nonce, 2)  # another tenant's signature
        await asyncio.sleep(2.1)
        assert await second.claim(TENANT, nonce, 2)
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_redis_refuses_signed_requests_instead_of_skipping_the_check() -> None:
    store = signing.RedisNonceStore("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    try:
        with pytest.raises(signing.ReplayCheckUnavailable) as refused:
            await store.claim(TENANT, "n", 10)
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    finally:
        await store.close()


async def test_the_configured_store_follows_the_redis_url(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    in_database = seen_signatures.nonce_store(redis_url=None, db=db)
    shared = seen_signatures.nonce_store(redis_url=REDIS_URL, db=db)
    try:
        assert isinstance(in_database, seen_signatures.DatabaseNonceStore)
        assert isinstance(shared, signing.RedisNonceStore)
    finally:
        await in_database.close()
        await shared.close()
        await db.dispose()
