"""The models a tenant can use: the shipped default (registered per tenant) and their metrics."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import Database, TenantScope
from qortex.core.errors import NotFound
from qortex.core.pagination import Page, page_of
from qortex.engine import Predictor
from qortex.models import repository
from qortex.models.models import Model
from qortex.models.runtime import BUILTIN_DEFAULT, ModelRuntime
from qortex.tenants import repository as tenant_repository

DEFAULT_MODEL_NAME = "default"


async def register_builtin_models(*, db: Database, scope: TenantScope, runtime: ModelRuntime | None = None) -> Model:
    """Registers the shipped default model for a tenant (once per artifact version) and makes it the default.

    Replicas starting together after a new version ships all try to register it; the unique
    (tenant, name, version) constraint lets one win, and the others use its row. Releases starting together
    (a rolling upgrade) take turns on the tenant's row, so each clears the default the other added.
    """
    predictor = (runtime or ModelRuntime()).builtin_default()
    version = predictor.model_version
    try:
        async with db.tenant_session(scope, write=True) as session:
            await tenant_repository.get_in_scope(session=session, scope=scope, for_update=True)
            model = await repository.get_version(session=session, scope=scope, name=DEFAULT_MODEL_NAME, version=version)
            if model is None:
                await repository.clear_default(session=session, scope=scope)
                model = add_builtin_model(session=session, scope=scope, predictor=predictor)
        return model
    except IntegrityError:
        async with db.tenant_session(scope) as session:
            registered = await repository.get_version(
                session=session, scope=scope, name=DEFAULT_MODEL_NAME, version=version
            )
        if registered is None:
            raise
        return registered


def add_builtin_model(*, session: AsyncSession, scope: TenantScope, predictor: Predictor) -> Model:
    """Adds the shipped default model, as the tenant's default, to the caller's transaction."""
    metadata = predictor.metadata
    model = Model(
        tenant_id=scope.tenant_id,
        name=DEFAULT_MODEL_NAME,
        version=predictor.model_version,
        artifact=BUILTIN_DEFAULT,
        content_sha256=str(metadata["model_hash"]),
        is_default=True,
        horizon=int(metadata["horizon"]),
        metrics=dict(metadata.get("metrics") or {}),
        lineage=dict(metadata.get("lineage") or {}),
    )
    repository.add(session=session, scope=scope, model=model)
    return model


async def list_models(*, db: Database, scope: TenantScope, limit: int, after: uuid.UUID | None) -> Page[Model]:
    async with db.tenant_session(scope) as session:
        rows = await repository.list_models(session=session, scope=scope, limit=limit + 1, after=after)
    return page_of(rows, limit=limit)


async def get_model(*, db: Database, scope: TenantScope, model_id: uuid.UUID) -> Model:
    async with db.tenant_session(scope) as session:
        model = await repository.get(session=session, scope=scope, model_id=model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    return model


async def resolve(*, db: Database, scope: TenantScope, reference: str | None, runtime: ModelRuntime) -> Model:
    """Finds the model a request names (an id, a name (latest version), `name@version`, or the default) among
    those this server can compute."""
    cache = runtime.references
    if (known := cache.get(scope.tenant_id, reference)) is not None:
        return known
    async with db.tenant_session(scope) as session:
        if reference is None:
            model = await repository.get_default(session=session, scope=scope)
        else:
            model = await _by_reference(session=session, scope=scope, reference=reference)
        if model is None:
            raise NotFound(f"model {reference or DEFAULT_MODEL_NAME!r} not found")
        named_version = _names_a_version(reference)
        if not runtime.can_serve(model) and not named_version:
            # The default or a bare name means the version this server runs: during a rolling upgrade, or
            # after a rollback, the newest one registered may be another release's.
            versions = await repository.list_versions(session=session, scope=scope, name=model.name)
            model = next((version for version in versions if runtime.can_serve(version)), model)
    if not runtime.can_serve(model):
        if named_version:
            raise NotFound(
                f"model {model.name}@{model.version} belongs to another release and is not available on this "
                "server; name the model without a version for the one it runs"
            )
        raise NotFound(
            f"no version of model {model.name!r} that this server runs is registered for this tenant "
            f"({model.name}@{model.version} belongs to another release)"
        )
    cache.put(scope.tenant_id, reference, model)
    return model


def _names_a_version(reference: str | None) -> bool:
    """Whether a reference names one version (by id or `name@version`) rather than the default or a name."""
    if reference is None:
        return False
    try:
        uuid.UUID(reference)
    except ValueError:
        return "@" in reference
    return True


async def _by_reference(*, session: AsyncSession, scope: TenantScope, reference: str) -> Model | None:
    try:
        return await repository.get(session=session, scope=scope, model_id=uuid.UUID(reference))
    except ValueError:
        pass
    name, at, version = reference.partition("@")
    if at:
        return await repository.get_version(session=session, scope=scope, name=name, version=version)
    return await repository.get_latest_by_name(session=session, scope=scope, name=name)
