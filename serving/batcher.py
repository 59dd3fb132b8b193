"""One dynamic batcher per model: concurrent requests are run through the model together.

Requests queue with a key (requests with different keys, e.g. different decode
options, never share a batch). The batcher takes the oldest request, waits up
to `batch_timeout_ms` for more of the same key until `max_batch_size` inputs,
drops requests whose client cancelled or whose deadline has passed, and runs
the batch on a worker thread so that the asyncio loop (health checks, other
RPCs) never blocks on the model. One batch runs at a time per model; requests
arriving meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from serving import metrics
from training.flags import option

log = logging.getLogger(__name__)

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]
"""run_batch(key, inputs) -> one result per input, on the worker thread."""


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = option(64, "most inputs (texts) run through a model at once")
    batch_timeout_ms: float = option(5.0, "how long the oldest request waits for others "
                                          "to share its batch")
    max_queue_size: int = option(1024, "most inputs waiting per model; beyond it requests "
                                       "fail fast with RESOURCE_EXHAUSTED")


class QueueFull(Exception):
    """The model's queue holds `max_queue_size` inputs already."""


class DeadlineExpired(Exception):
    """The request's deadline passed before its batch ran."""


@dataclass
class _Pending:
    key: Hashable
    inputs: list[Any]
    future: asyncio.Future
    deadline: float | None  # time.monotonic() seconds
    enqueued: float


class Batcher:
    def __init__(self, model: str, run_batch: RunBatch, config: BatchingConfig):
        self.model = model
        self.config = config
        self._run_batch = run_batch
        self._pending: collections.deque[_Pending] = collections.deque()
        self._queued_inputs = 0
        self._arrived = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, f"infer-{model}")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), name=f"batch-{self.model}")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, inputs: list[Any],
                     deadline: float | None = None) -> list[Any]:
        """Queues `inputs` (split into batch-sized parts) and returns their results in order."""
        size = self.config.max_batch_size
        parts = [inputs[i:i + size] for i in range(0, len(inputs), size)]
        if self._queued_inputs + len(inputs) > self.config.max_queue_size:
            raise QueueFull(f"{self._queued_inputs} inputs are queued for model {self.model!r} "
                            f"(limit {self.config.max_queue_size}); retry with backoff")
        loop = asyncio.get_running_loop()
        futures = []
        for part in parts:
            future = loop.create_future()
            self._pending.append(_Pending(key, part, future, deadline, time.monotonic()))
            futures.append(future)
        self._queued_inputs += len(inputs)
        metrics.QUEUE_DEPTH.labels(self.model).set(self._queued_inputs)
        self._arrived.set()
        try:
            results = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()  # parts not yet run are dropped by the loop
            raise
        return [r for part in results for r in part]

    def _take_batch(self) -> list[_Pending]:
        """Removes the oldest request and the next ones of its key, up to max_batch_size."""
        key = self._pending[0].key
        batch, count = [], 0
        for item in list(self._pending):
            if item.key == key and count + len(item.inputs) <= self.config.max_batch_size:
                batch.append(item)
                count += len(item.inputs)
                self._pending.remove(item)
        return batch

    def _ready_inputs(self, key: Hashable) -> int:
        return sum(len(p.inputs) for p in self._pending if p.key == key)

    async def _loop(self) -> None:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            oldest = self._pending[0]
            close_at = oldest.enqueued + self.config.batch_timeout_ms / 1000
            while (self._ready_inputs(oldest.key) < self.config.max_batch_size
                   and (wait := close_at - time.monotonic()) > 0):
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except TimeoutError:
                    break
            batch = self._take_batch()
            self._queued_inputs -= sum(len(p.inputs) for p in batch)
            metrics.QUEUE_DEPTH.labels(self.model).set(self._queued_inputs)
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        live = []
        for item in batch:
            if item.future.done():  # cancelled by its client
                metrics.DROPPED.labels(self.model).inc()
            elif item.deadline is not None and item.deadline <= now:
                metrics.DROPPED.labels(self.model).inc()
                item.future.set_exception(DeadlineExpired("deadline passed while queued"))
            else:
                metrics.QUEUE_WAIT_SECONDS.labels(self.model).observe(now - item.enqueued)
                live.append(item)
        if not live:
            return
        inputs = [x for item in live for x in item.inputs]
        metrics.BATCH_SIZE.labels(self.model).observe(len(inputs))
        started = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, live[0].key, inputs)
        except Exception as error:  # the model failed: every request of the batch hears it
            log.exception("batch of %d inputs failed on model %s", len(inputs), self.model)
            for item in live:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            metrics.INFERENCE_SECONDS.labels(self.model).observe(time.monotonic() - started)
        offset = 0
        for item in live:
            if not item.future.done():
                item.future.set_result(list(results[offset:offset + len(item.inputs)]))
            offset += len(item.inputs)
