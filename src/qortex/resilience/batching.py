"""The engine batcher: coalesces concurrent prediction requests into one `predict_batch` call.

Requests wait at most `max_wait_s` for company, the batch runs in a worker thread so the event loop
stays free, and the queue is bounded: when it is full the caller gets `Overloaded` (503) at once
instead of an unbounded wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from qortex.core.errors import Overloaded
from qortex.engine import PredictionResult, Predictor


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


class EngineBatcher:
    def __init__(self, *, max_batch: int, max_wait_s: float, queue_size: int, retry_after_seconds: int) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.retry_after_seconds = retry_after_seconds
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qortex-engine")
        self._worker: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="qortex-engine-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while not self._queue.empty():
            _fail_shutting_down([self._queue.get_nowait()])
        self._executor.shutdown(wait=True)

    async def predict(self, predictor: Predictor, series: Sequence[np.ndarray], horizon: int) -> list[PredictionResult]:
        future: asyncio.Future[list[PredictionResult]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(predictor, series, horizon, future))
        except asyncio.QueueFull:
            raise Overloaded(
                "the prediction queue is full; retry shortly", retry_after_seconds=self.retry_after_seconds
            ) from None
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            try:
                size = len(jobs[0].series)
                if size < self.max_batch and self.max_wait_s > 0:
                    await asyncio.sleep(self.max_wait_s)
                while size < self.max_batch and not self._queue.empty():
                    job = self._queue.get_nowait()
                    jobs.append(job)
                    size += len(job.series)
                await self._execute(jobs)
            except asyncio.CancelledError:
                # Jobs already taken off the queue would otherwise wait forever once stop() cancels us.
                _fail_shutting_down(jobs)
                raise

    async def _execute(self, jobs: list[_Job]) -> None:
        groups: dict[tuple[int, int], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((id(job.predictor), job.horizon), []).append(job)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            live = [job for job in group if not job.future.done()]
            if not live:
                continue
            series = [s for job in live for s in job.series]
            try:
                results = await loop.run_in_executor(
                    self._executor, live[0].predictor.predict_batch, series, live[0].horizon
                )
            except Exception as error:  # handed to every waiting request, which maps it to a problem
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            offset = 0
            for job in live:
                if not job.future.done():
                    job.future.set_result(results[offset : offset + len(job.series)])
                offset += len(job.series)
