"""The predictions API: create, replay, batch, read, list."""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import cast

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI

from qortex.core.database import Database
from qortex.engine import PredictionResult, Predictor
from qortex.models import repository
from qortex.models.models import Model
from qortex.models.runtime import BUILTIN_DEFAULT
from qortex.predictions.schemas import PredictionBatchOut
from qortex.security.rbac import Role
from tests.conftest import TenantCredentials, key_for


def series(n: int = 64, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in 100 + np.cumsum(rng.normal(size=n))]


async def test_a_prediction_is_answered_with_every_field_and_stored(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    body = {"source": "sensor-1", "values": series(), "horizon": 1, "subject_ref": "customer-7"}
    response = await client.post("/v1/predictions", json=body, headers=acme.headers)
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["direction"] in {"up", "down", "neutral"}
    assert 0.5 <= made["confidence"] <= 1.0
    assert 0.0 <= made["probability_up"] <= 1.0
    assert math.isclose(made["confidence"], max(made["probability_up"], 1 - made["probability_up"]), abs_tol=1e-9)
    assert made["factors"] and {"name", "group", "value", "weight"} <= set(made["factors"][0])
    assert len(made["quantum"]["expectations"]) == 8
    assert {"encoding", "neuromorphic", "quantum", "readout"} <= set(made["timings_ms"])
    assert made["model"]["name"] == "default"
    assert made["subject_ref"] == "customer-7"
    assert response.headers["x-request-id"]

    fetched = await client.get(f"/v1/predictions/{made['id']}", headers=acme.headers)
    assert fetched.status_code == 200
    assert fetched.json() == made


async def test_an_idempotency_key_replays_the_first_answer(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    headers = {**acme.headers, "Idempotency-Key": "order-42"}
    body = {"source": "s", "values": series(seed=1)}
    first = await client.post("/v1/predictions", json=body, headers=headers)
    second = await client.post("/v1/predictions", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert len(listed.json()["items"]) == 1


async def test_an_idempotency_key_reused_for_another_body_is_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "order-43"}
    await client.post("/v1/predictions", json={"source": "s", "values": series(seed=1)}, headers=headers)
    reused = await client.post("/v1/predictions", json={"source": "s", "values": series(seed=2)}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch"])
async def test_an_idempotency_key_sent_twice_is_refused_not_read_as_one_of_its_copies(
    client: httpx.AsyncClient, acme: TenantCredentials, path: str
) -> None:
    """A proxy may fold the copies into one key, "a, b": a retry through it would be made again, not replayed."""
    item = {"source": "s", "values": series(seed=1)}
    body = {"items": [item]} if path.endswith("batch") else item
    headers = [*acme.headers.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    refused = await client.post(path, json=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert (await client.get("/v1/predictions", headers=acme.headers)).json()["items"] == []


@pytest.mark.parametrize("key", ["é", "ключ", "naïve", "tab\tin", "\x7f", "", "k" * 256])
async def test_an_idempotency_key_beyond_printable_ascii_is_refused_alike(
    client: httpx.AsyncClient, acme: TenantCredentials, key: str
) -> None:
    """Header bytes arrive read as Latin-1: a UTF-8 key would be accepted or refused by the bytes it happens to hold."""
    headers = {**acme.headers, "Idempotency-Key": key.encode()}
    refused = await client.post("/v1/predictions", json={"source": "s", "values": series(seed=1)}, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["detail"] == "Idempotency-Key must be 1 to 255 printable ASCII characters"


async def test_a_batch_answers_each_item_and_a_bad_item_fails_alone(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    items = [
        {"source": "a", "values": series(seed=3)},
        {"source": "b", "values": [1, 2, 3]},
        {"source": "c", "values": series(seed=4), "colour": "red"},
        {"source": "d", "values": series(seed=5), "model": "no-such-model"},
        {"source": "e", "values": series(seed=6)},
        "not an object",
        None,
    ]
    response = await client.post("/v1/predictions/batch", json={"items": items}, headers=acme.headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["succeeded"], answer["failed"]) == (2, 5)
    statuses = [item["status"] for item in answer["items"]]
    assert statuses == [201, 422, 422, 404, 201, 422, 422]
    assert answer["items"][1]["problem"]["errors"][0]["loc"] == ["body", "values"]
    assert answer["items"][2]["problem"]["errors"][0]["loc"] == ["body", "colour"]
    PredictionBatchOut.model_validate(answer)
    stored = await client.get(f"/v1/predictions/{answer['items'][4]['prediction']['id']}", headers=acme.headers)
    assert stored.status_code == 200
    assert stored.json() == answer["items"][4]["prediction"]


async def test_a_valid_batch_answers_what_is_stored(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    items = [{"source": f"s{i}", "values": series(seed=20 + i), "subject_ref": f"c{i}"} for i in range(5)]
    response = await client.post("/v1/predictions/batch", json={"items": items}, headers=acme.headers)
    assert response.status_code == 200, response.text
    answer = PredictionBatchOut.model_validate(response.json())
    assert (answer.succeeded, answer.failed) == (5, 0)
    for index, item in enumerate(response.json()["items"]):
        assert (item["index"], item["status"], item["problem"]) == (index, 201, None)
        stored = await client.get(f"/v1/predictions/{item['prediction']['id']}", headers=acme.headers)
        assert stored.json() == item["prediction"]
        assert item["prediction"]["subject_ref"] == f"c{index}"


async def test_a_batch_above_the_limit_is_refused(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    items = [{"source": "x", "values": [1.0] * 8}] * 1001
    response = await client.post("/v1/predictions/batch", json={"items": items}, headers=acme.headers)
    assert response.status_code == 422
    assert "at most 1000" in response.json()["detail"]


class HeldEngine:
    """An engine call that blocks until the test opens its gate, keeping the engine busy."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def predict_batch(self, series_list: Sequence[npt.ArrayLike], horizon: int | None = None) -> list[PredictionResult]:
        self.entered.set()
        self.gate.wait(timeout=30)
        raise RuntimeError("held engine released")


async def test_a_prediction_behind_queued_batch_series_is_answered_503_overloaded_at_once(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few batch requests may hold more series than the engine computes in minutes: the queue bounds series too."""
    batcher = app.state.services.batcher
    monkeypatch.setattr(batcher, "queue_series", 3)
    held = HeldEngine()
    busy = asyncio.create_task(batcher.predict(cast(Predictor, held), [np.zeros(8)], 1))
    try:
        await asyncio.to_thread(held.entered.wait, 10)
        items = [{"source": f"s{i}", "values": series(seed=30 + i)} for i in range(3)]
        batch = asyncio.create_task(client.post("/v1/predictions/batch", json={"items": items}, headers=acme.headers))
        async with asyncio.timeout(10):
            while batcher.queued_series < 3:  # noqa: ASYNC110 - the batcher has no event to wait for
                await asyncio.sleep(0.01)

        refused = await asyncio.wait_for(
            client.post("/v1/predictions", json={"source": "s", "values": series(seed=40)}, headers=acme.headers), 10
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/overloaded")
        assert refused.headers["retry-after"] == "1"

        held.gate.set()
        answered = await asyncio.wait_for(batch, 10)
        assert answered.status_code == 200, answered.text
        assert answered.json()["succeeded"] == 3
    finally:
        held.gate.set()
        await asyncio.gather(busy, return_exceptions=True)


async def test_listing_pages_newest_first_with_filters(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    ids = []
    for index in range(5):
        body = {"source": "even" if index % 2 == 0 else "odd", "values": series(seed=10 + index)}
        ids.append((await client.post("/v1/predictions", json=body, headers=acme.headers)).json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/predictions", params=params, headers=acme.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    even = (await client.get("/v1/predictions", params={"source": "even"}, headers=acme.headers)).json()
    assert [item["id"] for item in even["items"]] == [ids[4], ids[2], ids[0]]
    for direction in ("up", "down", "neutral"):
        chosen = (await client.get("/v1/predictions", params={"direction": direction}, headers=acme.headers)).json()
        assert all(item["direction"] == direction for item in chosen["items"])


async def test_a_creation_window_that_ends_before_it_starts_is_refused_not_answered_empty(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Swapped bounds are a client's mistake: an empty page would read as "no predictions then"."""
    await client.post("/v1/predictions", json={"source": "s", "values": series()}, headers=acme.headers)
    for after, before in (
        ("2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),
        ("2026-01-01T12:00:00Z", "2026-01-01T13:00:00+01:00"),
    ):
        params = {"created_after": after, "created_before": before}
        refused = await client.get("/v1/predictions", params=params, headers=acme.headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["loc"] == ["query", "created_before"]
    window = {"created_after": "2020-01-01T00:00:00Z", "created_before": "2100-01-01T00:00:00Z"}
    assert len((await client.get("/v1/predictions", params=window, headers=acme.headers)).json()["items"]) == 1


async def test_a_creation_window_offset_sent_with_an_unencoded_plus_is_read_as_that_offset(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """A query string reads `+` as a space: curl and browsers send `...T12:00:00+01:00` as typed."""
    made = (await client.post("/v1/predictions", json={"source": "s", "values": series()}, headers=acme.headers)).json()
    at = datetime.fromisoformat(made["created_at"]).astimezone(timezone(timedelta(hours=1)))
    for bounds, listed in (
        (f"created_after={(at - timedelta(microseconds=1)).isoformat()}", 1),
        (f"created_before={at.isoformat()}", 0),
        (f"created_before={(at + timedelta(minutes=1)).strftime('%Y-%m-%dT%H:%M')}+0100", 1),
    ):
        answer = await client.get(f"/v1/predictions?{bounds}", headers=acme.headers)
        assert answer.status_code == 200, answer.text
        assert [item["id"] for item in answer.json()["items"]] == [made["id"]] * listed
    # Without a time, `2026-01-01 01:00` is a date and a time, not an offset: still refused for lacking a timezone.
    naive = await client.get("/v1/predictions?created_after=2026-01-01+01:00", headers=acme.headers)
    assert naive.status_code == 422, naive.text


async def test_a_horizon_the_model_was_not_trained_for_is_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    response = await client.post(
        "/v1/predictions", json={"source": "s", "values": series(), "horizon": 7}, headers=acme.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "horizon"]


async def test_models_list_the_shipped_default_with_its_metrics(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    listed = (await client.get("/v1/models", headers=acme.headers)).json()
    assert len(listed["items"]) == 1
    model = listed["items"][0]
    assert model["name"] == "default" and model["is_default"]
    assert model["metrics"], "the shipped model publishes its evaluation metrics"
    one = await client.get(f"/v1/models/{model['id']}", headers=acme.headers)
    assert one.json() == model


async def _register_other_release(
    db: Database,
    who: TenantCredentials,
    version: str,
    *,
    is_default: bool,
    name: str = "default",
    artifact: str = BUILTIN_DEFAULT,
) -> Model:
    """A model row as another release registers it: by default the same artifact reference, other parameters."""
    other = Model(
        tenant_id=who.tenant.id,
        name=name,
        version=version,
        artifact=artifact,
        content_sha256=version.rpartition("+")[2] * 4,
        is_default=is_default,
        horizon=1,
        metrics={},
        lineage={},
    )
    async with db.tenant_session(who.tenant.scope, write=True) as session:
        if is_default:
            await repository.clear_default(session=session, scope=who.tenant.scope)
        repository.add(session=session, scope=who.tenant.scope, model=other)
    return other


async def test_spellings_of_one_model_id_share_one_remembered_reference(
    client: httpx.AsyncClient, acme: TenantCredentials, app: FastAPI
) -> None:
    """Letter case, braces and a URN all name one id: remembered once each, a tenant could fill the cache that
    every tenant shares with spellings of its own model's id and so empty it for the others."""
    model_id = uuid.UUID((await client.get("/v1/models", headers=acme.headers)).json()["items"][0]["id"])
    spellings = [str(model_id), str(model_id).upper(), f"{{{model_id}}}", model_id.urn, model_id.hex]
    for reference in spellings:
        body = {"source": "s", "values": series(), "model": reference}
        made = await client.post("/v1/predictions", json=body, headers=acme.headers)
        assert made.status_code == 201 and made.json()["model"]["id"] == str(model_id)
    assert len(app.state.services.runtime.references) == 1


async def test_a_version_of_another_release_is_not_answered_with_this_servers_parameters(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    """After an upgrade the earlier default stays listed, but nothing here can compute it any more."""
    current = (await client.get("/v1/models", headers=acme.headers)).json()["items"][0]
    earlier = await _register_other_release(db, acme, "0.0.9+0123456789abcdef", is_default=False)
    for reference in ("default@0.0.9+0123456789abcdef", str(earlier.id)):
        refused = await client.post(
            "/v1/predictions", json={"source": "s", "values": series(), "model": reference}, headers=acme.headers
        )
        assert refused.status_code == 404
        assert "belongs to another release" in refused.json()["detail"]
    items = [
        {"source": "s", "values": series(), "model": "default@0.0.9+0123456789abcdef"},
        {"source": "s", "values": series()},
    ]
    answered = (await client.post("/v1/predictions/batch", json={"items": items}, headers=acme.headers)).json()
    assert [item["status"] for item in answered["items"]] == [404, 201]
    assert answered["items"][1]["prediction"]["model"]["version"] == current["version"]


async def test_the_default_is_the_version_this_server_runs_when_another_release_registered_a_newer_one(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    """During a rolling upgrade, or after a rollback, the newest default row may be another release's."""
    current = (await client.get("/v1/models", headers=acme.headers)).json()["items"][0]
    await _register_other_release(db, acme, "9.9.9+fedcba9876543210", is_default=True)
    for model in (None, "default"):
        body = {"source": "s", "values": series()} | ({"model": model} if model else {})
        made = await client.post("/v1/predictions", json=body, headers=acme.headers)
        assert made.status_code == 201, made.json()
        assert made.json()["model"]["version"] == current["version"]
    named = await client.post(
        "/v1/predictions",
        json={"source": "s", "values": series(), "model": "default@9.9.9+fedcba9876543210"},
        headers=acme.headers,
    )
    assert named.status_code == 404


async def test_the_default_is_the_version_this_server_runs_when_a_newer_one_is_an_artifact_it_lacks(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    """After a rollback from a release that shipped its default under another artifact reference."""
    current = (await client.get("/v1/models", headers=acme.headers)).json()["items"][0]
    await _register_other_release(db, acme, "9.9.9+fedcba9876543210", is_default=True, artifact="file:/srv/m.npz")
    for model in (None, "default"):
        body = {"source": "s", "values": series()} | ({"model": model} if model else {})
        made = await client.post("/v1/predictions", json=body, headers=acme.headers)
        assert made.status_code == 201, made.json()
        assert made.json()["model"]["version"] == current["version"]


async def test_a_model_this_server_cannot_compute_is_refused_naming_the_model_not_its_artifact(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    other = await _register_other_release(
        db, acme, "2.0+0123456789abcdef", is_default=False, name="custom", artifact="file:/srv/models/custom.npz"
    )
    for reference in ("custom@2.0+0123456789abcdef", str(other.id)):
        refused = await client.post(
            "/v1/predictions", json={"source": "s", "values": series(), "model": reference}, headers=acme.headers
        )
        assert refused.status_code == 404
        assert refused.json()["detail"] == (
            "model custom@2.0+0123456789abcdef belongs to another release and is not available on this server; "
            "name the model without a version for the one it runs"
        )


async def test_a_name_without_a_version_this_server_runs_is_refused_without_advice_that_cannot_help(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    """Naming the model without a version is what the versioned refusal advises; here that is what was done."""
    for name, artifact in (("retuned", BUILTIN_DEFAULT), ("custom", "file:/srv/models/custom.npz")):
        await _register_other_release(db, acme, "2.0+0123456789abcdef", is_default=False, name=name, artifact=artifact)
        refused = await client.post(
            "/v1/predictions", json={"source": "s", "values": series(), "model": name}, headers=acme.headers
        )
        assert refused.status_code == 404
        assert refused.json()["detail"] == (
            f"no version of model {name!r} that this server runs is registered for this tenant "
            f"({name}@2.0+0123456789abcdef belongs to another release)"
        )


async def test_read_only_roles_see_predictions_without_the_subject_reference(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    body = {"source": "s", "values": series(seed=30), "subject_ref": "customer-9"}
    made = (await client.post("/v1/predictions", json=body, headers=acme.headers)).json()
    for role, visible in ((Role.ANALYST, True), (Role.VIEWER, False), (Role.AUDITOR, False)):
        headers = {"Authorization": f"Bearer {await key_for(db, acme.tenant, role)}"}
        one = (await client.get(f"/v1/predictions/{made['id']}", headers=headers)).json()
        listed = (await client.get("/v1/predictions", headers=headers)).json()["items"][0]
        for answer in (one, listed):
            assert ("subject_ref" in answer) is visible, role
            assert answer["probability_up"] == made["probability_up"]
        if visible:
            assert one["subject_ref"] == "customer-9"


async def test_the_openapi_document_describes_the_answer_read_only_roles_get(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    """A client generated from /openapi.json must be able to read a viewer's prediction, which has no subject_ref."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    made = (await client.post("/v1/predictions", json={"source": "s", "values": series()}, headers=acme.headers)).json()
    viewer = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.VIEWER)}"}
    one = (await client.get(f"/v1/predictions/{made['id']}", headers=viewer)).json()
    listed = (await client.get("/v1/predictions", headers=viewer)).json()["items"][0]
    schema = schemas["PredictionOut"]
    for answer in (made, one, listed):
        assert set(schema["required"]) <= set(answer) <= set(schema["properties"])
