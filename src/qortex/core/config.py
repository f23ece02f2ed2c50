"""One settings class, read once from `QORTEX_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from qortex.core.netsettings import CidrList, OriginList

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every option has a safe default for the embedded mode (one process, SQLite, in-process cache)."""

    # An empty variable counts as unset: `QORTEX_DATA_DIR=` would otherwise put the data in the working directory.
    # `inf` and `nan` are no durations: an infinite lease or interval would pass a lower bound and break at use.
    model_config = SettingsConfigDict(env_prefix="QORTEX_", extra="ignore", env_ignore_empty=True, allow_inf_nan=False)

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".qortex")
    database_url: str | None = None
    database_schema: str | None = None
    # PostgreSQL: the app connects as a role that owns no tables; migrations run as the owner.
    migration_database_url: str | None = None
    database_app_role: str | None = None
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    # On SIGTERM, requests in flight get this long to finish; then their connections are closed.
    shutdown_grace_seconds: int = Field(default=30, ge=1, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    auto_migrate: bool = True

    max_body_bytes: int = Field(default=10 * MIB, ge=1024)
    batch_max_items: int = Field(default=1000, ge=1, le=10_000)
    # Rows kept past their time (Idempotency-Key answers, sessions, seen signatures) are deleted this often.
    housekeeping_interval_seconds: float = Field(default=3600.0, ge=1.0, le=86_400.0)

    engine_max_batch: int = Field(default=256, ge=1)
    engine_max_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    engine_queue_size: int = Field(default=2048, ge=1)
    # Series waiting for the engine, about 1.5 s of its work at the measured ~15,000 series/s: a few batch requests
    # of 1,000 series would otherwise hold every single prediction behind them for minutes.
    engine_queue_series: int = Field(default=20_000, ge=1, le=1_000_000)
    engine_retry_after_seconds: int = Field(default=1, ge=1, le=3600)

    # Revoked keys must stop working within 5 seconds on every process, so the cache may not outlive that.
    api_key_cache_seconds: float = Field(default=5.0, ge=0.0, le=5.0)
    api_key_cache_size: int = Field(default=10_000, ge=1)

    # argon2id cost; a stored hash made with other parameters is rehashed at the next successful login.
    password_time_cost: int = Field(default=3, ge=1, le=20)
    password_memory_kib: int = Field(default=64 * 1024, ge=8, le=4 * 1024 * 1024)
    password_parallelism: int = Field(default=4, ge=1, le=64)
    # `kid:secret` pairs separated by commas; the first signs, all verify (keep an old kid until its tokens expire).
    # Unset in embedded mode: a random key is generated into <data_dir>/jwt-signing-key (mode 0600).
    jwt_signing_keys: SecretStr | None = None
    jwt_issuer: str = "qortex"
    jwt_audience: str = "qortex-api"
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    # Without Redis each process polls for ended sessions this often (the promise is "refused within 5 s").
    session_poll_seconds: float = Field(default=2.0, gt=0.0, le=4.0)
    # Login throttling: failures allowed before backoff starts (1 s, doubling per failure, capped).
    login_free_failures_per_account: int = Field(default=5, ge=1)
    login_free_failures_per_ip: int = Field(default=20, ge=1)
    login_max_backoff_seconds: int = Field(default=900, ge=1, le=86_400)
    # --- identity: people, passwords, tokens, sessions (insert identity settings above this line)

    # Per-tenant rate limits and quotas (plans in qortex.limits.plans); false turns enforcement off.
    limits_enabled: bool = True
    # A tenant's effective limits and stored-bytes total are cached this long in each process.
    limits_cache_seconds: float = Field(default=15.0, ge=0.0, le=300.0)
    # A concurrency slot a dead process never released frees itself after this long (at most a day: Redis refuses
    # expiries beyond its range, which would leave every request unlimited).
    limits_concurrency_lease_seconds: float = Field(default=300.0, ge=1.0, le=86_400.0)
    # Redis calls for limits give up after this long; the request is then served unlimited (fail open).
    limits_redis_timeout_seconds: float = Field(default=0.5, gt=0.0, le=10.0)
    # At most one `rate_limited` audit event per credential and limit in this interval; it counts the rest.
    limits_audit_interval_seconds: float = Field(default=10.0, ge=0.0, le=3600.0)
    # --- rate limits and quotas (insert limit settings above this line)

    # Browser origins allowed to call the API (CORS), comma-separated or JSON; empty sends no CORS headers.
    cors_origins: OriginList = Field(default_factory=list)
    # CIDRs of the proxies whose X-Forwarded-For is believed; empty: the TCP peer is the client.
    trusted_proxies: CidrList = Field(default_factory=list)
    # Tenants' allow-lists and signing settings are cached per process this long: a change takes
    # effect at once on the replica that made it, and within this delay on every other one.
    tenant_policy_cache_seconds: float = Field(default=5.0, ge=0.0, le=10.0)
    # --- request security: headers, CORS, proxies, allow-lists, signing (insert above this line)

    @field_validator("database_url")
    @classmethod
    def _not_in_memory(cls, value: str | None) -> str | None:
        # Each connection of the pool would open its own, empty database: migrated on one, missing on the next.
        try:
            url = make_url(value) if value else None
        except ArgumentError:
            return value  # not a URL: refused, in its own words, where the database is opened
        if url is None or url.get_backend_name() != "sqlite":
            return value
        # `file::memory:` is SQLite's URI spelling of `:memory:` (with `uri=true`; without it, a file of that name).
        if url.database in (None, "", ":memory:", "file::memory:") or url.query.get("mode") == "memory":
            raise ValueError("an in-memory SQLite database cannot be shared by the server's connections; give a file")
        return value

    @field_validator("engine_queue_series")
    @classmethod
    def _queue_holds_a_largest_batch(cls, value: int, info: ValidationInfo) -> int:
        # A smaller bound would admit the largest batch only into an empty queue: under steady load, never.
        largest = info.data.get("batch_max_items")
        if largest is not None and value < largest:
            raise ValueError(f"must be at least QORTEX_BATCH_MAX_ITEMS ({largest})")
        return value

    @field_validator("password_parallelism")
    @classmethod
    def _argon2_has_memory_for_every_lane(cls, value: int, info: ValidationInfo) -> int:
        # argon2 refuses less than 8 KiB per lane at hashing time: every login and password change would fail.
        memory = info.data.get("password_memory_kib")
        if memory is not None and memory < 8 * value:
            raise ValueError(
                f"{value} lanes need QORTEX_PASSWORD_MEMORY_KIB of at least {8 * value} (8 per lane), not {memory}"
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'qortex.db').resolve()}"

    @property
    def resolved_migration_url(self) -> str:
        return self.migration_database_url or self.resolved_database_url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def database_problems(self) -> list[str]:
        """Reasons this configuration may not open its database (in production, the embedded one by default)."""
        if self.env == "production" and not self.database_url:
            return ["QORTEX_DATABASE_URL must be set explicitly in production"]
        return []

    def production_problems(self) -> list[str]:
        """Reasons this configuration may not serve production traffic (empty when it may)."""
        problems = self.database_problems()
        if self.env == "production" and not self.jwt_signing_keys:
            problems.append("QORTEX_JWT_SIGNING_KEYS must be set in production (a generated key is for embedded mode)")
        return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
