"""The engine batcher: coalesces concurrent prediction requests into one `predict_batch` call.

Requests wait at most `max_wait_s` for company (no longer once the queued series fill a batch), the
batch runs in a worker thread so the event loop stays free, and the queue is bounded, in requests and in
series (a single request may carry a thousand): when it is full the caller gets `Overloaded` (503) at
once instead of an unbounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog
from threadpoolctl import threadpool_limits

from qortex.core.errors import Overloaded
from qortex.engine import PredictionResult, Predictor

log = structlog.get_logger("qortex.engine.batcher")


@dataclass(slots=True)
class _Job:
    predictor: Predictor
    series: Sequence[np.ndarray]
    horizon: int
    future: asyncio.Future[list[PredictionResult]] = field(repr=False)


def _fail_shutting_down(jobs: Sequence[_Job]) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(Overloaded("the server is shutting down", retry_after_seconds=1))


def _predict_batch(predictor: Predictor, series: list[np.ndarray], horizon: int) -> list[PredictionResult]:
    try:
        return predictor.predict_batch(series, horizon)
    except StopIteration as error:
        # asyncio cannot hand StopIteration through a future: the call would never complete, and the
        # worker, waiting for it, would leave every later request waiting too.
        raise RuntimeError("the engine raised StopIteration") from error


class EngineBatcher:
    def __init__(
        self, *, max_batch: int, max_wait_s: float, queue_size: int, queue_series: int, retry_after_seconds: int
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_series = queue_series
        self.retry_after_seconds = retry_after_seconds
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        # Series of the jobs in the queue, cancelled ones included: a job leaves the count when the worker takes it.
        self._queued_series = 0
        # While the worker waits for company: how many more series would fill its batch, and the event
        # that wakes it as soon as they are queued (waiting out max_wait_s would only add latency).
        self._series_wanted: int | None = None
        self._batch_filled = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qortex-engine")
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def queued_series(self) -> int:
        return self._queued_series

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        # One BLAS thread: the server's parallelism comes from batching and replicas, and BLAS threads
        # competing with the event loop on a small machine made engine calls many times slower.
        threadpool_limits(limits=1)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="qortex-engine-batcher")

    async def stop(self) -> None:
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while not self._queue.empty():
            _fail_shutting_down([self._take(self._queue.get_nowait())])
        # Waiting for a running engine call must not block the event loop the other requests share.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def predict(self, predictor: Predictor, series: Sequence[np.ndarray], horizon: int) -> list[PredictionResult]:
        if self._stopping:  # nothing reads the queue any more
            raise Overloaded("the server is shutting down", retry_after_seconds=1)
        # A request larger than the whole series bound is admitted only when nothing waits, or it could never run.
        too_many_series = not self._queue.empty() and self._queued_series + len(series) > self.queue_series
        if too_many_series or self._queue.full():
            raise Overloaded(
                "the prediction queue is full; retry shortly", retry_after_seconds=self.retry_after_seconds
            )
        future: asyncio.Future[list[PredictionResult]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(predictor, series, horizon, future))
        self._queued_series += len(series)
        if self._series_wanted is not None and self._queued_series >= self._series_wanted:
            self._batch_filled.set()
        return await future

    def _take(self, job: _Job) -> _Job:
        self._queued_series -= len(job.series)
        return job

    async def _wait_for_company(self, size: int) -> None:
        """Waits at most max_wait_s for more series, returning as soon as those queued would fill the batch."""
        wanted = self.max_batch - size
        if wanted <= 0 or self.max_wait_s <= 0 or self._queued_series >= wanted:
            return
        self._series_wanted = wanted
        self._batch_filled.clear()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait_s):
                    await self._batch_filled.wait()
        finally:
            self._series_wanted = None

    async def _run(self) -> None:
        # A job that would have taken the batch past max_batch starts the next one (it has waited already).
        carried: _Job | None = None
        while True:
            if carried is None:
                jobs = [self._take(await self._queue.get())]
                waited = False
            else:
                jobs, carried, waited = [carried], None, True
            try:
                size = len(jobs[0].series)
                if not waited:
                    await self._wait_for_company(size)
                while size < self.max_batch and not self._queue.empty():
                    job = self._take(self._queue.get_nowait())
                    if size + len(job.series) > self.max_batch:
                        carried = job
                        break
                    jobs.append(job)
                    size += len(job.series)
                await self._execute(jobs)
            except asyncio.CancelledError:
                # Jobs already taken off the queue would otherwise wait forever once stop() cancels us.
                _fail_shutting_down([*jobs, *([carried] if carried is not None else [])])
                raise
            except Exception as error:  # the worker must outlive any one batch, or every later request hangs
                log.exception("engine_batch_failed", error_type=type(error).__name__)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)

    async def _execute(self, jobs: list[_Job]) -> None:
        groups: dict[tuple[int, int], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((id(job.predictor), job.horizon), []).append(job)
        for group in groups.values():
            live = [job for job in group if not job.future.done()]
            if not live:
                continue
            if len(live) == 1:
                await self._execute_alone(live[0])
                continue
            try:
                results = await self._predict(live)
            except Exception:
                # One job's bad series must not fail the others (possibly other tenants'): run each alone.
                for job in live:
                    await self._execute_alone(job)
                continue
            offset = 0
            for job in live:
                if not job.future.done():
                    job.future.set_result(results[offset : offset + len(job.series)])
                offset += len(job.series)

    async def _predict(self, jobs: list[_Job]) -> list[PredictionResult]:
        series = [s for job in jobs for s in job.series]
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _predict_batch, jobs[0].predictor, series, jobs[0].horizon
        )

    async def _execute_alone(self, job: _Job) -> None:
        try:
            results = await self._predict([job])
        except Exception as error:  # handed to the waiting request, which maps it to a problem
            if not job.future.done():
                job.future.set_exception(error)
            return
        if not job.future.done():
            job.future.set_result(results)
