"""One dynamic batcher per model: concurrent requests are run through the model together.

Requests queue with a key (requests with different keys, e.g. different decode
options, never share a batch). The batcher takes the oldest live request, waits
up to `batch_timeout_ms` for more of the same key until `max_batch_size` inputs,
and runs the batch on a worker thread so that the asyncio loop (health checks,
other RPCs) never blocks on the model. One batch runs at a time per model;
requests arriving meanwhile form the next batch. A request whose client
cancelled or whose deadline passed stops counting against the queue at once
and is dropped before any compute is spent on it.

Admission: a request is refused at once (QueueFull) when the queue is full, or
when the queue ahead of it would, at the model's recent throughput, keep it
waiting past its deadline: better a fast refusal the client can retry
elsewhere than a slow DEADLINE_EXCEEDED after the queue slot was spent.
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


class BatcherClosed(Exception):
    """The model is being unloaded or the server is shutting down."""


@dataclass
class _Pending:
    key: Hashable
    inputs: list[Any]
    future: asyncio.Future
    deadline: float | None  # time.monotonic() seconds
    enqueued: float

    def expired(self, now: float) -> bool:
        return self.deadline is not None and self.deadline <= now


class Batcher:
    def __init__(self, model: str, run_batch: RunBatch, config: BatchingConfig):
        self.model = model
        self.config = config
        self._run_batch = run_batch
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, f"infer-{model}")
        self._task: asyncio.Task | None = None
        self._closing = False  # no new requests
        self._stopped = False  # the loop ends
        self._running = False  # a batch is on the worker thread
        self._inputs_per_second: float | None = None  # moving average of recent batches

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), name=f"batch-{self.model}")
        self._task.add_done_callback(self._report_exit)

    def _report_exit(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("batcher of model %s stopped", self.model, exc_info=task.exception())

    async def close(self, drain: bool = False) -> None:
        """Stops taking requests. A running batch finishes; queued requests finish too with
        `drain`, or fail with BatcherClosed without it."""
        self._closing = True
        if drain:
            while any(not item.future.done() for item in self._pending) or self._running:
                await asyncio.sleep(0.01)
        self._stopped = True
        self._arrived.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(BatcherClosed(f"model {self.model!r} is unloading"))
        self._pending.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    @property
    def queued_inputs(self) -> int:
        return sum(len(p.inputs) for p in self._pending if not p.future.done())

    async def submit(self, key: Hashable, inputs: list[Any],
                     deadline: float | None = None) -> list[Any]:
        """Queues `inputs` (split into batch-sized parts) and returns their results in order."""
        if self._closing or self._task is None or self._task.done():
            raise BatcherClosed(f"model {self.model!r} is not accepting requests")
        queued = self.queued_inputs
        if queued + len(inputs) > self.config.max_queue_size:
            raise QueueFull(f"{queued} inputs are queued for model {self.model!r} "
                            f"(limit {self.config.max_queue_size}); retry with backoff")
        if deadline is not None and self._inputs_per_second:
            # this request's inputs, those ahead of it, and the batch running now
            wait = (queued + len(inputs) + self.config.max_batch_size) / self._inputs_per_second
            if time.monotonic() + wait > deadline:
                raise QueueFull(f"model {self.model!r} would answer in about {wait:.1f} s, "
                                "after the request's deadline; retry later or elsewhere")
        loop = asyncio.get_running_loop()
        size = self.config.max_batch_size
        futures = []
        for start in range(0, len(inputs), size):
            future = loop.create_future()
            self._pending.append(_Pending(key, inputs[start:start + size], future, deadline,
                                          time.monotonic()))
            futures.append(future)
        metrics.QUEUE_DEPTH.labels(self.model).set(queued + len(inputs))
        self._arrived.set()
        try:
            results = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()  # parts not yet run no longer count, and are never run
            raise
        return [r for part in results for r in part]

    def _prune(self, now: float) -> None:
        """Drops requests that were cancelled or whose deadline passed."""
        live = collections.deque()
        for item in self._pending:
            if item.future.done():
                metrics.DROPPED.labels(self.model).inc()
            elif item.expired(now):
                metrics.DROPPED.labels(self.model).inc()
                item.future.set_exception(DeadlineExpired("deadline passed while queued"))
            else:
                live.append(item)
        self._pending = live
        metrics.QUEUE_DEPTH.labels(self.model).set(self.queued_inputs)

    def _take_batch(self, key: Hashable) -> list[_Pending]:
        """Removes the oldest requests of `key`, up to max_batch_size inputs."""
        batch, count, rest = [], 0, collections.deque()
        for item in self._pending:
            if item.key == key and count + len(item.inputs) <= self.config.max_batch_size:
                batch.append(item)
                count += len(item.inputs)
            else:
                rest.append(item)
        self._pending = rest
        metrics.QUEUE_DEPTH.labels(self.model).set(self.queued_inputs)
        return batch

    def _ready_inputs(self, key: Hashable) -> int:
        return sum(len(p.inputs) for p in self._pending if p.key == key and not p.future.done())

    async def _loop(self) -> None:
        while not self._stopped:
            self._prune(time.monotonic())
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = self._pending[0]
            close_at = oldest.enqueued + self.config.batch_timeout_ms / 1000
            while (not self._stopped
                   and self._ready_inputs(oldest.key) < self.config.max_batch_size
                   and (wait := close_at - time.monotonic()) > 0):
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except TimeoutError:
                    break
            self._prune(time.monotonic())
            if self._pending and not self._stopped:
                self._running = True
                try:
                    await self._run(self._take_batch(self._pending[0].key))
                finally:
                    self._running = False

    async def _run(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        for item in batch:
            metrics.QUEUE_WAIT_SECONDS.labels(self.model).observe(now - item.enqueued)
        inputs = [x for item in batch for x in item.inputs]
        metrics.BATCH_SIZE.labels(self.model).observe(len(inputs))
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, batch[0].key, inputs)
            if len(results) != len(inputs):
                raise RuntimeError(f"model returned {len(results)} results for "
                                   f"{len(inputs)} inputs")
        except Exception as error:  # the model failed: every request of the batch hears it
            log.exception("batch of %d inputs failed on model %s", len(inputs), self.model)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            seconds = time.monotonic() - now
            metrics.INFERENCE_SECONDS.labels(self.model).observe(seconds)
            rate = len(inputs) / max(seconds, 1e-6)
            self._inputs_per_second = rate if self._inputs_per_second is None else (
                0.8 * self._inputs_per_second + 0.2 * rate)
        offset = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(list(results[offset:offset + len(item.inputs)]))
            offset += len(item.inputs)
