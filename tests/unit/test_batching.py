"""The engine batcher: coalescing, ordering, back-pressure, errors and shutdown, with the real default model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from qortex.core.errors import Overloaded
from qortex.engine import InvalidSeriesError, PredictionResult, Predictor
from qortex.resilience.batching import EngineBatcher

pytestmark = pytest.mark.timeout(60)


class CountingPredictor(Predictor):
    """The shipped model, recording the size of every `predict_batch` call; a closed gate holds calls back."""

    calls: list[int]
    gate: threading.Event
    entered: threading.Event

    def predict_batch(self, series_list: Sequence[npt.ArrayLike], horizon: int | None = None) -> list[PredictionResult]:
        self.calls.append(len(series_list))
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return super().predict_batch(series_list, horizon)


_LOADED: dict[str, CountingPredictor] = {}


@pytest.fixture
def predictor() -> CountingPredictor:
    if "default" not in _LOADED:
        loaded = CountingPredictor.load_default()
        assert isinstance(loaded, CountingPredictor)
        _LOADED["default"] = loaded
    model = _LOADED["default"]
    model.calls, model.gate, model.entered = [], threading.Event(), threading.Event()
    model.gate.set()
    return model


async def started(**options: Any) -> EngineBatcher:
    settings: dict[str, Any] = {
        "max_batch": 256,
        "max_wait_s": 0.05,
        "queue_size": 64,
        "queue_series": 4096,
        "retry_after_seconds": 3,
    }
    batcher = EngineBatcher(**(settings | options))
    batcher.start()
    return batcher


@pytest.fixture
async def batcher() -> AsyncIterator[EngineBatcher]:
    running = await started()
    yield running
    await running.stop()


def walk(seed: int, n: int = 48, drift: float = 0.0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return 100 + np.cumsum(rng.normal(loc=drift, size=n))


async def test_concurrent_requests_share_one_engine_call(batcher: EngineBatcher, predictor: CountingPredictor) -> None:
    answers = await asyncio.gather(*(batcher.predict(predictor, [walk(i)], 1) for i in range(10)))
    assert predictor.calls == [10]
    assert [len(a) for a in answers] == [1] * 10


async def test_each_request_gets_its_own_results_in_order(batcher: EngineBatcher, predictor: CountingPredictor) -> None:
    requests = [[walk(1, drift=0.8), walk(2, drift=-0.8), walk(3)], [walk(4, drift=-0.3)], [walk(5), walk(6, drift=1)]]
    expected = [[predictor.predict_batch([s], 1)[0].probability_up for s in series] for series in requests]
    flat = [p for probabilities in expected for p in probabilities]
    assert len({round(p, 3) for p in flat}) == len(flat), "test series must be told apart by their answers"
    predictor.calls.clear()

    answers = await asyncio.gather(*(batcher.predict(predictor, series, 1) for series in requests))

    assert predictor.calls == [6]
    got = [[result.probability_up for result in answer] for answer in answers]
    # The engine computes in float32, so a series answers alike alone or in a batch to about 1e-7.
    for got_one, expected_one in zip(got, expected, strict=True):
        assert got_one == pytest.approx(expected_one, abs=1e-6)


async def test_a_batch_never_grows_past_max_batch(predictor: CountingPredictor) -> None:
    batcher = await started(max_batch=4)
    try:
        await asyncio.gather(*(batcher.predict(predictor, [walk(i)], 1) for i in range(10)))
    finally:
        await batcher.stop()
    assert predictor.calls == [4, 4, 2]


async def test_a_batch_runs_as_soon_as_its_series_fill_it_instead_of_waiting_out_max_wait(
    predictor: CountingPredictor,
) -> None:
    batcher = await started(max_batch=4, max_wait_s=30.0)
    try:
        first = asyncio.create_task(batcher.predict(predictor, [walk(1)], 1))
        await asyncio.sleep(0.05)  # the worker has taken it and waits for company
        rest = [batcher.predict(predictor, [walk(2)], 1), batcher.predict(predictor, [walk(3), walk(4)], 1)]
        answers = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=10)
    finally:
        await batcher.stop()
    assert predictor.calls == [4]
    assert [len(a) for a in answers] == [1, 1, 2]


async def test_a_request_that_would_overfill_the_batch_starts_the_next_one(predictor: CountingPredictor) -> None:
    batcher = await started(max_batch=4, max_wait_s=0.05)
    try:
        requests = [[walk(1), walk(2), walk(3)], [walk(4), walk(5), walk(6)], [walk(7)], [walk(8, n=20)] * 6]
        answers = await asyncio.gather(*(batcher.predict(predictor, series, 1) for series in requests))
    finally:
        await batcher.stop()
    # Only a single request larger than max_batch runs past it, alone.
    assert predictor.calls == [3, 4, 6]
    assert [len(a) for a in answers] == [3, 3, 1, 6]


async def test_a_full_queue_answers_503_overloaded_with_retry_after(predictor: CountingPredictor) -> None:
    batcher = await started(queue_size=1, max_wait_s=0.0, retry_after_seconds=3)
    predictor.gate.clear()
    try:
        running = asyncio.create_task(batcher.predict(predictor, [walk(1)], 1))
        await asyncio.to_thread(predictor.entered.wait, 10)
        queued = asyncio.create_task(batcher.predict(predictor, [walk(2)], 1))
        await asyncio.sleep(0)

        with pytest.raises(Overloaded) as refused:
            await batcher.predict(predictor, [walk(3)], 1)

        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "3"}
        predictor.gate.set()
        assert [len(r) for r in await asyncio.gather(running, queued)] == [1, 1]
    finally:
        predictor.gate.set()
        await batcher.stop()
    assert predictor.calls == [1, 1]


async def engine_busy(batcher: EngineBatcher, predictor: CountingPredictor) -> asyncio.Task[list[PredictionResult]]:
    """A one-series request the engine is computing, held there until the test opens the gate."""
    predictor.gate.clear()
    running = asyncio.create_task(batcher.predict(predictor, [walk(1)], 1))
    await asyncio.to_thread(predictor.entered.wait, 10)
    return running


async def test_a_request_whose_series_would_overfill_the_queue_answers_503_at_once(
    predictor: CountingPredictor,
) -> None:
    """Few requests can hold many series (a batch holds up to 1,000): the series waiting are bounded too."""
    batcher = await started(queue_size=64, queue_series=4, max_wait_s=0.0, retry_after_seconds=3)
    try:
        running = await engine_busy(batcher, predictor)
        batch = asyncio.create_task(batcher.predict(predictor, [walk(i) for i in range(2, 5)], 1))
        await asyncio.sleep(0)
        assert (batcher.queue_depth, batcher.queued_series) == (1, 3)

        with pytest.raises(Overloaded) as refused:
            await asyncio.wait_for(batcher.predict(predictor, [walk(5), walk(6)], 1), timeout=5)
        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "3"}
        assert (batcher.queue_depth, batcher.queued_series) == (1, 3), "a refused request leaves no trace"

        single = asyncio.create_task(batcher.predict(predictor, [walk(7)], 1))  # exactly fills the bound
        await asyncio.sleep(0)
        assert batcher.queued_series == 4
        with pytest.raises(Overloaded):
            await asyncio.wait_for(batcher.predict(predictor, [walk(8)], 1), timeout=5)

        predictor.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(running, batch, single), timeout=10)
    finally:
        predictor.gate.set()
        await batcher.stop()
    assert [len(a) for a in answers] == [1, 3, 1]
    assert batcher.queued_series == 0


async def test_a_request_larger_than_the_series_bound_runs_when_nothing_waits(predictor: CountingPredictor) -> None:
    batcher = await started(queue_series=2, max_wait_s=0.0)
    try:
        running = await engine_busy(batcher, predictor)
        queued = asyncio.create_task(batcher.predict(predictor, [walk(2)], 1))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await asyncio.wait_for(batcher.predict(predictor, [walk(i) for i in range(3, 8)], 1), timeout=5)

        predictor.gate.set()
        await asyncio.wait_for(asyncio.gather(running, queued), timeout=10)
        # Refused whenever anything waits, it must run once nothing does, or it could never run at all.
        large = await asyncio.wait_for(batcher.predict(predictor, [walk(i) for i in range(3, 8)], 1), timeout=10)
    finally:
        predictor.gate.set()
        await batcher.stop()
    assert len(large) == 5
    assert predictor.calls == [1, 1, 5]


async def test_a_cancelled_request_leaves_the_series_count_once_the_worker_passes_it(
    predictor: CountingPredictor,
) -> None:
    batcher = await started(queue_series=4, max_wait_s=0.0)
    try:
        running = await engine_busy(batcher, predictor)
        abandoned = asyncio.create_task(batcher.predict(predictor, [walk(i) for i in range(2, 5)], 1))
        await asyncio.sleep(0)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        assert batcher.queued_series == 3, "still queued: the worker has not reached it"

        predictor.gate.set()
        await asyncio.wait_for(running, timeout=10)
        # The whole bound is free again: four series are admitted although another request may wait by now.
        answers = await asyncio.wait_for(
            asyncio.gather(*(batcher.predict(predictor, [walk(i), walk(i + 1)], 1) for i in (5, 7))), timeout=10
        )
    finally:
        predictor.gate.set()
        await batcher.stop()
    assert [len(a) for a in answers] == [2, 2]
    assert batcher.queued_series == 0
    assert 3 not in predictor.calls, "the cancelled request's series never reached the engine"


async def test_an_engine_error_fails_only_the_request_that_caused_it(
    batcher: EngineBatcher, predictor: CountingPredictor
) -> None:
    broken = walk(2)
    broken[5] = np.nan
    answers = await asyncio.gather(
        batcher.predict(predictor, [walk(1)], 1),
        batcher.predict(predictor, [broken], 1),
        batcher.predict(predictor, [walk(3)], 1),
        return_exceptions=True,
    )
    assert predictor.calls == [3, 1, 1, 1], "the shared call failed, then each request ran alone"
    assert isinstance(answers[1], InvalidSeriesError)
    for answer, seed in ((answers[0], 1), (answers[2], 3)):
        [alone] = await batcher.predict(predictor, [walk(seed)], 1)
        assert isinstance(answer, list)
        assert (answer[0].direction, answer[0].probability_up) == (alone.direction, alone.probability_up)

    recovered = await batcher.predict(predictor, [walk(4)], 1)
    assert len(recovered) == 1


async def test_stop_fails_every_pending_request_and_leaves_none_waiting(predictor: CountingPredictor) -> None:
    batcher = await started(max_wait_s=0.0)
    predictor.gate.clear()
    running = asyncio.create_task(batcher.predict(predictor, [walk(1)], 1))
    await asyncio.to_thread(predictor.entered.wait, 10)
    waiting = [asyncio.create_task(batcher.predict(predictor, [walk(i)], 1)) for i in range(2, 6)]
    await asyncio.sleep(0)
    assert batcher.queue_depth == 4

    # stop() waits (blocking) for the engine thread to finish its batch, so the gate opens from another thread.
    opener = threading.Timer(0.1, predictor.gate.set)
    opener.start()
    try:
        await asyncio.wait_for(batcher.stop(), timeout=10)
    finally:
        opener.cancel()
        predictor.gate.set()

    outcomes = await asyncio.wait_for(asyncio.gather(running, *waiting, return_exceptions=True), timeout=5)
    assert all(isinstance(o, Overloaded) for o in outcomes), outcomes
    assert all(o.headers.get("Retry-After") for o in outcomes if isinstance(o, Overloaded))
    assert not batcher.running and (batcher.queue_depth, batcher.queued_series) == (0, 0)


async def test_a_request_after_stop_is_refused_at_once(predictor: CountingPredictor) -> None:
    batcher = await started()
    await batcher.stop()
    with pytest.raises(Overloaded, match="shutting down"):
        await asyncio.wait_for(batcher.predict(predictor, [walk(1)], 1), timeout=5)
    assert batcher.queue_depth == 0


async def test_stop_fails_requests_the_worker_took_but_had_not_run(predictor: CountingPredictor) -> None:
    batcher = await started(max_wait_s=5.0)
    pending = [asyncio.create_task(batcher.predict(predictor, [walk(i)], 1)) for i in range(3)]
    await asyncio.sleep(0.05)  # the worker has taken the first job and waits for company

    await asyncio.wait_for(batcher.stop(), timeout=10)

    outcomes = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=5)
    assert all(isinstance(o, Overloaded) for o in outcomes), outcomes
    assert predictor.calls == []


class FailingPredictor(CountingPredictor):
    """Raises from every engine call, as a broken model would."""

    def predict_batch(self, series_list: Sequence[npt.ArrayLike], horizon: int | None = None) -> list[PredictionResult]:
        raise RuntimeError("engine failure")


async def test_a_lone_failing_request_gets_the_error_and_the_batcher_keeps_serving(
    batcher: EngineBatcher, predictor: CountingPredictor
) -> None:
    failing = FailingPredictor.__new__(FailingPredictor)
    failing.__dict__.update(predictor.__dict__)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="engine failure"):
            await asyncio.wait_for(batcher.predict(failing, [walk(1)], 1), timeout=10)
    assert batcher.running
    [served] = await asyncio.wait_for(batcher.predict(predictor, [walk(2)], 1), timeout=10)
    assert served.direction in {"up", "down", "neutral"}


class StopIterationPredictor(CountingPredictor):
    """Raises StopIteration from the engine call, as a stray `next()` on an empty iterator would."""

    def predict_batch(self, series_list: Sequence[npt.ArrayLike], horizon: int | None = None) -> list[PredictionResult]:
        raise StopIteration


async def test_an_engine_call_raising_stop_iteration_fails_its_request_and_the_batcher_keeps_serving(
    batcher: EngineBatcher, predictor: CountingPredictor
) -> None:
    """asyncio cannot hand StopIteration through a future: the engine call never completed, and nor did any later."""
    broken = StopIterationPredictor.__new__(StopIterationPredictor)
    broken.__dict__.update(predictor.__dict__)
    with pytest.raises(RuntimeError, match="StopIteration"):
        await asyncio.wait_for(batcher.predict(broken, [walk(1)], 1), timeout=10)
    [served] = await asyncio.wait_for(batcher.predict(predictor, [walk(2)], 1), timeout=10)
    assert served.direction in {"up", "down", "neutral"}
