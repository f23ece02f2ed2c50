"""Access tokens: HS256 JWTs signed with a keyring of `kid`s, verified in memory; opaque refresh tokens.

The algorithm is pinned: `alg: none`, HS512, RS256 and every other header value are refused, so a
token cannot choose how it is checked. Every claim is required. Several keys verify at once so that
rotating the signing key (a new first `kid`) does not log anyone out: keep the old `kid` configured
until the last token it signed has expired (the access token lifetime).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jwt

from qortex.core.clock import utcnow
from qortex.core.config import Settings
from qortex.security.rbac import Role

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "jti", "sub", "tenant", "roles", "sid")
KEY_FILE_NAME = "jwt-signing-key"
MIN_SECRET_BYTES = 32
REFRESH_PREFIX = "qxr_"
# Clock drift tolerated between the replica that signed a token and the one checking it.
LEEWAY_SECONDS = 5


class InvalidToken(Exception):
    """The token is malformed, tampered with, expired, not yet valid, or not for us."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, secret=<hidden>)"


def parse_keyring(value: str) -> list[SigningKey]:
    """Parses `kid:secret,kid:secret`; refuses short secrets and repeated kids."""
    keys: list[SigningKey] = []
    for item in value.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or not secret:
            raise ValueError("QORTEX_JWT_SIGNING_KEYS must be comma-separated `kid:secret` pairs")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT signing key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        if any(key.kid == kid for key in keys):
            raise ValueError(f"the JWT signing key id {kid!r} appears twice")
        keys.append(SigningKey(kid=kid, secret=secret.encode()))
    return keys


def load_or_create_key_file(path: Path) -> SigningKey:
    """The embedded mode's key: created once with mode 0600, shared by every process using the data dir.

    Written to a private temporary file and then linked into place, so several workers starting at
    once agree on one key and none ever reads a half-written file.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{secrets.token_hex(4)}:{secrets.token_urlsafe(48)}\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(temporary, path)
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return read_key_file(path)


def read_key_file(path: Path) -> SigningKey:
    """The generated key; ValueError names the file (not QORTEX_JWT_SIGNING_KEYS, which the operator never set)."""
    try:
        raw = path.read_bytes()
    except OSError as error:  # permissions or a directory: deleting it is not the remedy
        raise ValueError(f"cannot read the JWT signing key {path}: {error.strerror}") from None
    try:
        return parse_keyring(raw.decode().strip())[0]
    except (UnicodeDecodeError, ValueError):
        raise ValueError(
            f"{path} is not a JWT signing key (`kid:secret`, a secret of at least {MIN_SECRET_BYTES} bytes); "
            "delete it to have a new one generated, which ends every access token signed with the old one"
        ) from None


class Keyring:
    """The keys that verify, by kid; the first one signs."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.signing = keys[0]
        self._by_kid = {key.kid: key for key in keys}

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if settings.jwt_signing_keys is not None:
            return cls(parse_keyring(settings.jwt_signing_keys.get_secret_value()))
        if settings.env == "production":
            raise ValueError("QORTEX_JWT_SIGNING_KEYS must be set in production")
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls([load_or_create_key_file(settings.data_dir / KEY_FILE_NAME)])

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    session_id: uuid.UUID
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


class AccessTokens:
    """Issues and verifies access tokens; verification never touches the database."""

    def __init__(self, keyring: Keyring, *, issuer: str, audience: str, lifetime: timedelta) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessTokens:
        return cls(
            Keyring.from_settings(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            lifetime=timedelta(minutes=settings.access_token_minutes),
        )

    def issue(self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, role: Role, session_id: uuid.UUID) -> IssuedToken:
        now = utcnow().replace(microsecond=0)
        expires_at = now + self.lifetime
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "jti": secrets.token_urlsafe(16),
            "sub": str(user_id),
            "tenant": str(tenant_id),
            "roles": [role.value],
            "sid": str(session_id),
        }
        signing = self.keyring.signing
        token = jwt.encode(claims, signing.secret, algorithm=ALGORITHM, headers={"kid": signing.kid})
        return IssuedToken(token=token, expires_at=expires_at)

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("malformed token") from error
        kid = header.get("kid")
        key = self.keyring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        roles = claims["roles"]
        try:
            if not isinstance(roles, list) or len(roles) != 1:
                raise ValueError("roles must hold exactly one role")
            return AccessClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                tenant_id=uuid.UUID(str(claims["tenant"])),
                role=Role(roles[0]),
                session_id=uuid.UUID(str(claims["sid"])),
                token_id=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo),
            )
        except (ValueError, TypeError) as error:
            raise InvalidToken("malformed claims") from error


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def refresh_token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
