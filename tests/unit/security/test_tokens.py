"""Access tokens: pinned HS256, required claims, a keyring that rotates, a key file made 0600."""

from __future__ import annotations

import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr

from qortex.core.config import Settings
from qortex.security.rbac import Role
from qortex.security.tokens import (
    KEY_FILE_NAME,
    AccessTokens,
    InvalidToken,
    Keyring,
    new_refresh_token,
    parse_keyring,
    refresh_token_sha256,
)

OLD = "old:" + "o" * 40
NEW = "new:" + "n" * 40


def tokens_for(keys: str) -> AccessTokens:
    return AccessTokens(
        Keyring(parse_keyring(keys)), issuer="qortex", audience="qortex-api", lifetime=timedelta(minutes=15)
    )


def issue(tokens: AccessTokens) -> str:
    return tokens.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role=Role.ANALYST, session_id=uuid.uuid4()).token


def test_an_issued_token_round_trips_with_every_claim() -> None:
    tokens = tokens_for(NEW)
    user, tenant, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    issued = tokens.issue(user_id=user, tenant_id=tenant, role=Role.ADMIN, session_id=sid)
    claims = tokens.verify(issued.token)
    assert (claims.user_id, claims.tenant_id, claims.role, claims.session_id) == (user, tenant, Role.ADMIN, sid)
    raw = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(raw) == {"iss", "aud", "exp", "nbf", "iat", "jti", "sub", "tenant", "roles", "sid"}
    assert jwt.get_unverified_header(issued.token) == {"alg": "HS256", "typ": "JWT", "kid": "new"}


def test_an_old_kid_verifies_after_rotation_until_it_is_removed() -> None:
    old_token = issue(tokens_for(OLD))
    rotated = tokens_for(f"{NEW},{OLD}")
    assert rotated.verify(old_token).role == Role.ANALYST
    assert jwt.get_unverified_header(issue(rotated))["kid"] == "new"
    with pytest.raises(InvalidToken):
        tokens_for(NEW).verify(old_token)


def test_a_token_for_another_issuer_or_audience_is_refused() -> None:
    token = issue(tokens_for(NEW))
    for other in (
        AccessTokens(Keyring(parse_keyring(NEW)), issuer="other", audience="qortex-api", lifetime=timedelta(minutes=1)),
        AccessTokens(Keyring(parse_keyring(NEW)), issuer="qortex", audience="other", lifetime=timedelta(minutes=1)),
    ):
        with pytest.raises(InvalidToken):
            other.verify(token)


@pytest.mark.parametrize(
    "value",
    ["", "nokid", "k:short", f"{NEW},{NEW}", ":" + "s" * 40],
)
def test_bad_keyrings_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_keyring(value)


def test_embedded_mode_generates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    first = Keyring.from_settings(settings)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.from_settings(settings).signing == first.signing
    assert len(first.signing.secret) >= 32 and first.signing.secret.decode() not in repr(first.signing)


def test_processes_starting_together_agree_on_one_generated_key(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: Keyring.from_settings(settings).signing, range(16)))
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_production_refuses_to_start_without_configured_keys(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path, database_url="postgresql://db/q")
    assert any("QORTEX_JWT_SIGNING_KEYS" in problem for problem in settings.production_problems())
    with pytest.raises(ValueError):
        Keyring.from_settings(settings)
    assert not (tmp_path / KEY_FILE_NAME).exists()
    configured = Settings(
        env="production", data_dir=tmp_path, database_url="postgresql://db/q", jwt_signing_keys=SecretStr(NEW)
    )
    assert not any("JWT" in problem for problem in configured.production_problems())
    assert Keyring.from_settings(configured).signing.kid == "new"


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    first, second = new_refresh_token(), new_refresh_token()
    assert first != second and first.startswith("qxr_")
    assert len(refresh_token_sha256(first)) == 64 and refresh_token_sha256(first) != refresh_token_sha256(second)
