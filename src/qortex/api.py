"""The app factory: wires services, middleware and routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache, partial

import structlog
from fastapi import Depends, FastAPI
from redis.asyncio import ConnectionPool

from qortex import __version__
from qortex.audit.router import router as audit_router
from qortex.audit.service import AuditWriter
from qortex.core import idempotency
from qortex.core.config import Settings, get_settings
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Forbidden
from qortex.core.group_commit import GroupCommitter
from qortex.core.housekeeping import Housekeeping
from qortex.core.migrate import migrate
from qortex.identity.auth_router import router as auth_router
from qortex.identity.auth_service import AuthServices
from qortex.identity.router import router as api_keys_router
from qortex.identity.service import ApiKeyCache
from qortex.identity.sweeps import sweep_finished_sessions
from qortex.identity.users_router import router as users_router
from qortex.limits.middleware import RateLimitMiddleware
from qortex.limits.router import router as usage_router
from qortex.limits.service import RateLimits
from qortex.limits.storage import open_storage
from qortex.models import service as model_service
from qortex.models.router import router as models_router
from qortex.models.runtime import ModelRuntime
from qortex.observability.health import router as health_router
from qortex.observability.logging import configure_logging
from qortex.predictions.router import router as predictions_router
from qortex.resilience.batching import EngineBatcher
from qortex.security import seen_signatures
from qortex.security.tokens import KEY_FILE_NAME, parse_keyring, read_key_file
from qortex.tenants import service as tenant_service
from qortex.tenants.policy import TenantPolicyCache
from qortex.tenants.router import router as tenant_router
from qortex.web.client_ip import ClientIpMiddleware
from qortex.web.dependencies import AppServices, on_forbidden
from qortex.web.middleware import BodySizeLimitMiddleware, HeadAsGetMiddleware, RequestIdMiddleware
from qortex.web.openapi import document_answers
from qortex.web.problems import PROBLEM_RESPONSES, UnexpectedErrorMiddleware, install_problem_handlers
from qortex.web.query import refuse_repeated_parameters
from qortex.web.request_policy import RequestPolicy
from qortex.web.security_headers import SecurityHeadersMiddleware, add_cors

log = structlog.get_logger("qortex.api")


def startup_problems(settings: Settings) -> list[str]:
    """What would keep the app from starting or from serving safely, found before anything is written."""
    problems = settings.production_problems()
    if settings.jwt_signing_keys is not None:
        try:
            parse_keyring(settings.jwt_signing_keys.get_secret_value())
        except ValueError as error:
            problems.append(str(error))
    elif settings.env != "production" and (settings.data_dir / KEY_FILE_NAME).exists():
        # The embedded mode's generated key, read only at app start: a damaged one would fail it after the first
        # tenant's key was printed.
        try:
            read_key_file(settings.data_dir / KEY_FILE_NAME)
        except ValueError as error:
            problems.append(str(error))
    if settings.redis_url:
        try:
            ConnectionPool.from_url(settings.redis_url)  # parses only: connections open on first use
        except ValueError as error:
            problems.append(f"QORTEX_REDIS_URL: {error}")
    return problems


async def _tenant_scopes(db: Database) -> list[TenantScope]:
    return [tenant.scope for tenant in await tenant_service.list_all(db=db)]


async def start_services(settings: Settings, stack: AsyncExitStack) -> AppServices:
    """Builds and starts every service, pushing each one's stop onto `stack` as soon as it runs.

    The stack unwinds in reverse: on shutdown, and also when startup fails partway, so a failed start
    leaves no task running and no connection open; one stop that fails does not keep the others from running.
    """
    # Also checked here, not only by `qortex serve`: the app factory may be served by any ASGI server.
    problems = startup_problems(settings)
    if problems:
        raise RuntimeError("; ".join(problems))
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, schema=settings.database_schema)
    stack.push_async_callback(db.dispose)
    if settings.auto_migrate:
        await migrate(settings)
    runtime = ModelRuntime()
    runtime.builtin_default()  # load and verify the shipped model before the first request needs it
    for tenant in await tenant_service.list_all(db=db):
        await model_service.register_builtin_models(db=db, scope=tenant.scope, runtime=runtime)
    cache = ApiKeyCache(ttl_seconds=settings.api_key_cache_seconds, max_entries=settings.api_key_cache_size)
    audit = AuditWriter(db)
    audit.start()
    stack.push_async_callback(audit.stop)
    committer = GroupCommitter(db)
    committer.start()
    stack.push_async_callback(committer.stop)
    # Started after the committer, so stopped before it: what the engine answers last can still be committed.
    batcher = EngineBatcher(
        max_batch=settings.engine_max_batch,
        max_wait_s=settings.engine_max_wait_ms / 1000,
        queue_size=settings.engine_queue_size,
        queue_series=settings.engine_queue_series,
        retry_after_seconds=settings.engine_retry_after_seconds,
    )
    batcher.start()
    stack.push_async_callback(batcher.stop)
    housekeeping = Housekeeping(
        db=db,
        tenant_scopes=partial(_tenant_scopes, db),
        sweeps={
            "idempotency_answers": idempotency.sweep_expired,
            "auth_sessions": sweep_finished_sessions,
            "seen_signatures": seen_signatures.sweep_expired,
        },
        interval_seconds=settings.housekeeping_interval_seconds,
    )
    housekeeping.start()
    stack.push_async_callback(housekeeping.stop)
    limits = RateLimits(settings=settings, db=db, audit=audit, storage=open_storage(settings))
    stack.push_async_callback(limits.close)
    request_policy = RequestPolicy(
        policies=TenantPolicyCache(db=db, ttl_seconds=settings.tenant_policy_cache_seconds),
        nonces=seen_signatures.nonce_store(redis_url=settings.redis_url, db=db),
        audit=audit,
    )
    stack.push_async_callback(request_policy.close)
    auth = await AuthServices.start(settings, db, audit, request_policy.policies)
    stack.push_async_callback(auth.stop)
    # --- further services are built above this line, each pushing its stop
    return AppServices(
        settings=settings,
        db=db,
        runtime=runtime,
        batcher=batcher,
        key_cache=cache,
        audit=audit,
        committer=committer,
        housekeeping=housekeeping,
        auth=auth,
        request_policy=request_policy,
        limits=limits,
    )


@asynccontextmanager
async def _running_services(settings: Settings) -> AsyncIterator[AppServices]:
    """The started services, stopped on exit; a start that fails stops what it had started, then raises its error.

    A stop that fails while a failed start unwinds is logged, not raised: the error would otherwise take the place
    of the one that says why the server could not start.
    """
    stack = AsyncExitStack()
    try:
        services = await start_services(settings, stack)
    except BaseException:
        try:
            await stack.aclose()
        except Exception as stop_error:
            log.error("stop_failed", error_type=type(stop_error).__name__, exc_info=stop_error)
        raise
    async with stack:
        yield services


YOUNG_GC_THRESHOLD = 20_000


@cache
def _collect_before_first_freeze() -> None:
    """A full collection, once per process, so that startup's garbage is not frozen with what it built.

    A process serves one app; where it starts more (the tests start hundreds), each later start would pay
    a full pass over the whole heap (~0.1 s) for garbage that its app's stop unfreezes and frees anyway.
    """
    gc.collect()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running_services(settings) as services:
            app.state.services = services
            # What startup built lives as long as the app: taking it out of the collector's generations
            # keeps full collections short (before this they were the p99 stalls under load). A request
            # allocates thousands of short-lived containers, so young collections run less often too.
            thresholds = gc.get_threshold()
            _collect_before_first_freeze()
            gc.freeze()
            gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])
            try:
                yield
            finally:
                # Back to normal, so an app that stopped (tests start many per process) can be collected.
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    app = FastAPI(
        title="Qortex",
        version=__version__,
        summary="Multi-tenant time-series direction predictions with calibrated confidence and explanations.",
        lifespan=lifespan,
        # A trailing slash is a different, unknown path (404), not a redirect built from the Host header.
        redirect_slashes=False,
        # Generated clients name their methods after operationIds: the handler's name, not one built from the path.
        generate_unique_id_function=lambda route: route.name,
    )
    install_problem_handlers(app)
    app.add_exception_handler(Forbidden, on_forbidden)
    app.include_router(health_router)
    api_routers = (
        predictions_router,
        models_router,
        api_keys_router,
        usage_router,
        tenant_router,
        auth_router,
        users_router,
        audit_router,
    )
    for router in api_routers:
        app.include_router(router, responses=PROBLEM_RESPONSES, dependencies=[Depends(refuse_repeated_parameters)])
    # --- further routers are included above this line
    document_answers(app)
    # Middleware added last runs first: the request id exists before anything can fail.
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(ClientIpMiddleware, trusted_proxies=settings.trusted_proxies)
    add_cors(app, settings.cors_origins)
    # --- further middleware is added above this line (it runs after the body limit)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # Outermost, so the body limit's 413 and every other early answer carry the security headers too.
    app.add_middleware(SecurityHeadersMiddleware)
    return app
