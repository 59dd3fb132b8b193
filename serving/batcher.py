"""One dynamic batcher per model: concurrent requests are run through the model together.

Requests queue with a key (their decode options). Two scheduling policies:

- request: the batcher takes the oldest live request, waits up to
  `batch_timeout_ms` for more of the same key until `max_batch_size` inputs, and
  runs the batch to completion; requests arriving meanwhile form the next batch.
  A request that arrives after a quiet spell (none in the `batch_timeout_ms` before
  it) runs at once if the model is idle: no company is coming, and a lone client
  would otherwise pay the whole timeout on every request. Clients waiting on a batch
  send their next requests right after its answers, so after each answer the next
  batch waits up to `batch_timeout_ms` for as many requests as it answered: without
  that, 16 closed-loop clients split for good into two groups of 8 whose batches
  alternated, each run while the other's clients were away.
  When more are waiting than fit, those closest in input length to the oldest
  go with it, so that padding stays small.
- step (continuous batching, decoders only): a `StepDecoder` keeps a running
  decode in a graph loop of its own; before each of its steps started inputs join it
  (up to `max_batch_size` inputs in all, oldest first, any options) and ended inputs
  leave with their answer, so a short request never waits behind a long one. A
  request cancelled or past its deadline mid-decode leaves before the next step.
  Queued inputs are started (encoded) on a start thread, all those queued in one
  call, while the decode runs; those arriving during a start start together next.
  A decode thread reads the decoder's news (ended inputs, streams' progress) and
  posts it to the event loop; it never waits for the event loop.

The model always runs on worker threads, so the asyncio loop (health checks,
other RPCs) never blocks on it. A model call that fails is split in halves, run
apart, down to single requests (`run_isolating`): a request whose input breaks the
model (an image that does not decode) fails alone, with `InputFailed`, and every
other request of its batch is answered. A request whose client cancelled or whose
deadline passed stops counting against the queue at once and is dropped before
any compute is spent on it.

Admission: a request is refused at once (QueueFull) when the queue is full, or
when it would likely miss its deadline: the time until it is answered must fit in
80% of its remaining time (65% under request scheduling: `ADMISSION_MARGIN`).
Request scheduling counts batches: the rest of the running one, those that hold the
inputs queued ahead and its own (or those inputs at the model's recent throughput,
measured in wall time, if longer), and one more if a batch may pass it over for its
length; a batch takes a recent slow batch's time (95th percentile, or the latest
batch's if longer). A finished batch's requests are answered `ANSWER_BURST` at a
time, so that requests arriving meanwhile are heard (and refused) in between.
Step scheduling adds a recent slow decode (95th percentile) to a wait it counts in
slots: the request gets the slots freed after those the inputs queued ahead of it
take; a running input frees its slot one turnover after it joined, and a slot turns
over in the time the queue, while inputs wait for room, takes to move by
`max_batch_size` inputs (measured; the median decode until then). (A throughput
average missed the wait of a burst that fills the decode at once: nothing ends for a
whole decode.) Better a fast refusal the client can retry elsewhere than a slow
DEADLINE_EXCEEDED after the queue slot was spent.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from model.config import option
from serving import metrics
from serving.errors import reason
from serving.moving_average import MovingAverage
from serving.step_decoder import StepDecoder

log = logging.getLogger(__name__)

Part = TypeVar("Part")
Result = TypeVar("Result")

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]
"""run_batch(key, inputs) -> one result per input, on the worker thread."""

OnProgress = Callable[[int, str], None]
"""on_progress(index of the input in the request, its settled output so far), called on
the event loop while a streaming request decodes (step scheduling)."""


SCHEDULING = ("step", "request")
# Share of a request's remaining time kept in reserve at admission, per scheduling. A
# surge slows the model: the event loop answering hundreds of arrivals a second takes
# CPU from it. Request-scheduled batches of the quick translator took 0.77-0.83 s in the
# first seconds of a 4x surge against 0.54 s before it, and requests admitted on the
# old figure, estimated at 3.7-4.0 s, took 4.9-5.0 s (5 s deadlines): a fifth in
# reserve was not enough there. Step scheduling, whose estimate follows the slots
# freed, answered every admitted request in time with a fifth.
ADMISSION_MARGIN = {"step": 0.2, "request": 0.35}
# Request scheduling answers a batch's requests this many at a time, letting the requests
# that arrived meanwhile in between: answering 64 at once held the event loop for 15-22
# ms, and every refusal due then waited as long.
ANSWER_BURST = 8


@dataclass(frozen=True)
class BatchingConfig:
    scheduling: str = option("step", "'step': continuous batching, inputs join and leave a "
                                     "running decode at every step; 'request': each batch "
                                     "runs to completion before the next starts")
    max_batch_size: int = option(64, "most inputs (texts) run through a model at once")
    batch_timeout_ms: float = option(5.0, "request scheduling: how long the oldest request "
                                          "waits for others to share its batch, if another "
                                          "arrived within as long before it (after a "
                                          "quiet spell it runs at once), and how long after "
                                          "a batch's answers the next waits for as many "
                                          "requests (its clients, coming back); step "
                                          "scheduling starts at once, others join later")
    stream_interval_ms: float = option(20.0, "step scheduling: how often at most a "
                                             "stream hears its new text (and once after "
                                             "its first decoding steps); shorter sends "
                                             "more, smaller chunks, at a cost in "
                                             "throughput")
    max_queue_size: int = option(1024, "most inputs waiting per model; beyond it requests "
                                       "fail fast with RESOURCE_EXHAUSTED")


class QueueFull(Exception):
    """The model's queue holds `max_queue_size` inputs already."""


class DeadlineExpired(Exception):
    """The request's deadline passed before its batch ran."""


class InputFailed(Exception):
    """The model failed on one request's inputs, run alone after their batch failed: the
    likely cause is the request's own input; `error` is the model's error, which the
    request's task may turn into a client error (INVALID_ARGUMENT)."""

    def __init__(self, error: Exception):
        super().__init__(f"the model failed on this request's inputs: {error}")
        self.error = error


def run_isolating(run: Callable[[list[Part]], Result], parts: list[Part], model: str
                  ) -> tuple[list[tuple[list[Part], Result]], list[tuple[Part, InputFailed]]]:
    """`run(parts)` -> ([(parts, its result)], []); if it raises, each half is run the same
    way, down to single parts, so a part whose input breaks the model fails alone: the
    groups that ran with their results, and each part that failed alone with its error.
    One bad part among n costs about 2 log2(n) calls more; checking every input before it
    may join a batch (decoding each image once more, on a thread of its own) cost 12 % of
    the captions served at 16 clients."""
    try:
        return [(parts, run(parts))], []
    except Exception as error:
        if len(parts) == 1:
            log.warning("a request's inputs failed alone on model %s: %s", model,
                        reason(error))
            return [], [(parts[0], InputFailed(error))]
        log.debug("a call of %d requests failed on model %s; running its halves apart",
                  len(parts), model)
    half = len(parts) // 2
    ran, failed = run_isolating(run, parts[:half], model)
    more_ran, more_failed = run_isolating(run, parts[half:], model)
    return ran + more_ran, failed + more_failed


class BatcherClosed(Exception):
    """The model is being unloaded or the server is shutting down (or its batcher stopped
    on an error, and the model is being reloaded)."""


@dataclass(eq=False)  # hashed by identity: the step decoder's ticket
class _Pending:
    key: Hashable
    inputs: list[Any]
    future: asyncio.Future
    deadline: float | None  # time.monotonic() seconds
    enqueued: float
    offset: int = 0  # index of its first input in the request (large requests are split)
    on_progress: OnProgress | None = None
    started: float = 0.0  # step scheduling: when it joined the running decode
    after_quiet: bool = False  # no request arrived in the batch timeout before it

    def expired(self, now: float) -> bool:
        return self.deadline is not None and self.deadline <= now


class Batcher:
    """Args:
      model: name used in logs and metric labels.
      run_batch: runs a request-level batch.
      config: `config.scheduling` 'step' needs `decoder`.
      decoder: the model's step-level driver, if it has one.
      input_length: size of one input, to batch similar sizes together (request
        scheduling); `len` of the input by default (the server passes
        `serving.task.row_length`: characters of its texts).
      on_failure: called (on the event loop) if the batcher stops on an error of its own,
        after its requests failed with BatcherClosed; the registry reloads the model.
    """

    def __init__(self, model: str, run_batch: RunBatch, config: BatchingConfig,
                 decoder: StepDecoder | None = None,
                 input_length: Callable[[Any], int] = len,
                 on_failure: Callable[[], None] | None = None):
        if config.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {SCHEDULING}, got {config.scheduling!r}")
        if config.scheduling == "step" and decoder is None:
            raise ValueError(f"model {model!r} has no step decoder: use request scheduling")
        self.model = model
        self.config = config
        self._run_batch = run_batch
        self._input_length = input_length
        self._on_failure = on_failure
        self.failed = False  # stopped on an error of its own (not by `close`)
        self._decoder = decoder if config.scheduling == "step" else None
        self._margin = ADMISSION_MARGIN[config.scheduling]
        self._decoding: dict[_Pending, list] = {}  # step mode: parts decoding -> results
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived = asyncio.Event()
        self._last_arrival = -math.inf  # time.monotonic() of the latest request
        # request mode: the latest answered batch (time.monotonic(), its requests), and
        # the requests since, whose clients may be those it answered coming back
        self._answered: tuple[float, int] = (-math.inf, 0)
        self._since_answer = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, f"infer-{model}")
        # step mode: starts queued inputs while the decode thread steps; one at a time
        self._starter = concurrent.futures.ThreadPoolExecutor(1, f"start-{model}")
        self._starting = False
        self._task: asyncio.Task | None = None
        self._closing = False  # no new requests
        self._stopped = False  # the loop ends
        self._running = False  # a batch is on the worker thread
        self._batch_started = 0.0  # time.monotonic() the running batch started at
        self._throughput = MovingAverage()  # request mode: inputs/s of recent batches
        self._measured = [0, 0.0]  # inputs finished, seconds busy since the last average
        self._served: collections.deque[float] = collections.deque(maxlen=128)  # s per part
        # step mode: seconds a slot of the full decode takes to turn over (moving average),
        # from the inputs taken since `_full[0]` while others kept waiting (`_full[1]`)
        self._turnover = MovingAverage(weight=0.3)
        self._full: tuple[float, int] | None = None

    def start(self) -> None:
        metrics.QUEUE_DEPTH.labels(self.model).set(0)  # a series from the start: autoscalers
        loop = asyncio.get_running_loop()
        run = self._step_loop() if self._decoder else self._request_loop()
        self._task = loop.create_task(run, name=f"batch-{self.model}")
        self._task.add_done_callback(self._report_exit)

    def _report_exit(self, task: asyncio.Task) -> None:
        """If the batcher's loop ended on an error (a bug: model failures are caught), its
        requests would wait forever, new ones would be refused while health says SERVING,
        and the decode thread would keep the process from exiting on SIGTERM. So every
        request fails (UNAVAILABLE: retryable), the threads end, and `on_failure` hears."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("batcher of model %s stopped on an error; its requests fail (UNAVAILABLE) "
                  "and the model is reloaded", self.model, exc_info=task.exception())
        metrics.BATCHER_FAILURES.labels(self.model).inc()
        self.failed = self._closing = self._stopped = True
        if self._decoder:
            self._decoder.close()  # the decode thread ends
        error = BatcherClosed(f"model {self.model!r} stopped on an internal error and is "
                              "reloading")
        for item in [*self._pending, *self._decoding]:
            if not item.future.done():
                item.future.set_exception(error)
        self._pending.clear()
        self._decoding.clear()
        metrics.QUEUE_DEPTH.labels(self.model).set(0)
        if self._on_failure:
            self._on_failure()

    async def close(self, drain: bool = False) -> None:
        """Stops taking requests. A running batch finishes; queued requests finish too with
        `drain`, or fail with BatcherClosed without it."""
        self._closing = True
        if drain:
            while (any(not item.future.done() for item in self._pending) or self._running
                   or self._decoding):
                await asyncio.sleep(0.01)
        self._stopped = True
        self._arrived.set()
        if self._decoder:  # the decode thread ends (closing waits for the running calls)
            await asyncio.to_thread(self._decoder.close)
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        for item in [*self._pending, *self._decoding]:
            if not item.future.done():
                item.future.set_exception(BatcherClosed(f"model {self.model!r} is unloading"))
        self._pending.clear()
        self._decoding.clear()
        for executor in (self._executor, self._starter):
            await asyncio.to_thread(executor.shutdown, wait=True)

    @property
    def queued_inputs(self) -> int:
        return sum(len(p.inputs) for p in self._pending if not p.future.done())

    def submit(self, key: Hashable, inputs: list[Any], deadline: float | None = None,
               on_progress: OnProgress | None = None) -> Awaitable[list[Any]]:
        """Queues `inputs` (split into batch-sized parts) at once, or raises QueueFull or
        BatcherClosed at once; returns an awaitable of their results, in order.

        `on_progress` hears each input's settled output as it grows (step scheduling,
        exports that stream); cancelling the awaitable withdraws the request.
        """
        if self._closing or self._task is None or self._task.done():
            raise BatcherClosed(f"model {self.model!r} is not accepting requests")
        queued = self.queued_inputs
        if queued + len(inputs) > self.config.max_queue_size:
            raise QueueFull(f"{queued} inputs are queued for model {self.model!r} "
                            f"(limit {self.config.max_queue_size}); retry with backoff")
        wait = None if deadline is None else self._expected_seconds(queued, len(inputs))
        if wait and wait > (1 - self._margin) * (deadline - time.monotonic()):
            raise QueueFull(f"model {self.model!r} would answer in about {wait:.1f} s, "
                            "after the request's deadline; retry later or elsewhere")
        loop = asyncio.get_running_loop()
        size = self.config.max_batch_size
        now = time.monotonic()
        after_quiet = now - self._last_arrival > self.config.batch_timeout_ms / 1000
        self._last_arrival = now
        self._since_answer += 1
        futures = []
        for start in range(0, len(inputs), size):
            future = loop.create_future()
            self._pending.append(_Pending(key, inputs[start:start + size], future, deadline,
                                          now, start, on_progress, after_quiet=after_quiet))
            futures.append(future)
        metrics.QUEUE_DEPTH.labels(self.model).set(queued + len(inputs))
        self._arrived.set()  # the loop starts it in its next turn, with any arriving with it
        return self._results(futures)

    async def _results(self, futures: list[asyncio.Future]) -> list[Any]:
        try:
            results = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()  # parts not yet run no longer count, and are never run
            self._arrived.set()  # parts decoding leave at the next step
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
        """Removes the oldest request of `key` and, up to max_batch_size inputs, those of
        `key` whose deadline is near, then those closest to it in input length (so that
        padding stays small), among the next 2 * max_batch_size inputs of `key`."""
        same, ahead = [], 0
        for item in self._pending:  # a window: nothing is overtaken by more than a batch
            if item.key == key and ahead < 2 * self.config.max_batch_size:
                same.append(item)
                ahead += len(item.inputs)

        def length(item: _Pending) -> float:
            return sum(map(self._input_length, item.inputs)) / len(item.inputs)

        # Requests that cannot wait for another batch go first, whatever their length.
        soon = time.monotonic() + 2 * self._batch_seconds()
        urgent = [i for i in same[1:] if i.deadline is not None and i.deadline < soon]
        others = [i for i in same[1:] if i.deadline is None or i.deadline >= soon]
        target = length(same[0])
        chosen, count = set(), 0
        # sorted() is stable: among equally close requests the older goes first
        for item in [same[0], *urgent, *sorted(others, key=lambda i: abs(length(i) - target))]:
            if count + len(item.inputs) <= self.config.max_batch_size:
                chosen.add(item)
                count += len(item.inputs)
        batch = [item for item in self._pending if item in chosen]
        self._pending = collections.deque(i for i in self._pending if i not in chosen)
        metrics.QUEUE_DEPTH.labels(self.model).set(self.queued_inputs)
        return batch

    def _ready_inputs(self, key: Hashable) -> int:
        return sum(len(p.inputs) for p in self._pending if p.key == key and not p.future.done())

    def _service_seconds(self, quantile: float = 0.95) -> float:
        """How long a recent slow input (95th percentile) took from start to answer."""
        if not self._served:
            return 0.0
        return sorted(self._served)[int(quantile * (len(self._served) - 1))]

    def _expected_seconds(self, queued: int, count: int) -> float | None:
        """Seconds until `count` inputs queued behind `queued` others are answered, if
        theirs is a slow decode; None before anything was measured."""
        if self._decoder is None:
            if not self._throughput.value or not self._served:
                return None
            return self._batch_wait(queued, count)
        if not self._served:
            return None
        return self._slot_wait(queued + count) + self._service_seconds()

    def _batch_wait(self, queued: int, count: int) -> float:
        """Request scheduling: the rest of the running batch, then the batches that hold
        the inputs ahead and its own (or those inputs at the measured throughput, if
        longer: batches of other options take turns), and one more if queued inputs
        fill a batch (one may pass it over for its length). A batch takes a recent slow
        batch's time (95th percentile), or the latest batch's if longer: the
        percentile of the last 128 batches lagged when the model slowed down (the
        event loop taking CPU from it under overload: batches of 0.8 s against 0.54),
        and admitted requests were answered after their deadline."""
        batch = self._batch_seconds()
        size = self.config.max_batch_size
        rest = (max(self._batch_started + batch - time.monotonic(), 0.0) if self._running
                else 0.0)
        inputs = queued + count
        drain = max(inputs / self._throughput.value, math.ceil(inputs / size) * batch)
        return rest + drain + (queued >= size) * batch

    def _batch_seconds(self) -> float:
        """Request scheduling: a recent slow batch's time (95th percentile), or the latest
        batch's if longer (see `_batch_wait`)."""
        return max(self._service_seconds(), self._served[-1]) if self._served else 0.0

    def _slot_wait(self, needed: int) -> float:
        """Step scheduling: seconds until the running decode has freed `needed` slots, in
        order. A running input is expected to free its slot one turnover after it joined
        (at once if it is past that), and a freed slot is taken again for as long."""
        typical, now = self._turnover.value or self._service_seconds(0.5), time.monotonic()
        frees = sorted(max(item.started + typical - now, 0.0)
                       for item, results in self._decoding.items() for _ in results)
        frees[:0] = [0.0] * max(self.config.max_batch_size - len(frees), 0)  # free now
        rounds, slot = divmod(needed - 1, len(frees))
        return frees[slot] + rounds * typical

    def _close_at(self, oldest: _Pending) -> float:
        """Request scheduling: when the batch of `oldest` stops waiting for company: a batch
        timeout after it arrived, at once after a quiet spell; and, while fewer requests
        came since the latest batch was answered than it answered, no sooner than a batch
        timeout after that answer or the latest arrival (its clients, coming back)."""
        timeout = self.config.batch_timeout_ms / 1000
        close_at = oldest.enqueued + (0 if oldest.after_quiet else timeout)
        answered_at, answered = self._answered
        if self._since_answer < answered:
            close_at = max(close_at, max(answered_at, self._last_arrival) + timeout)
        return close_at

    def _observe_throughput(self, inputs: int, seconds: float) -> None:
        """Request scheduling: feeds the moving average of inputs/s that admission uses,
        in windows of at least 50 ms busy."""
        self._measured[0] += inputs
        self._measured[1] += seconds
        if self._measured[1] >= 0.05:
            self._throughput.add(self._measured[0] / self._measured[1])
            self._measured = [0, 0.0]

    async def _request_loop(self) -> None:
        busy_since = None  # end of the previous batch, while requests keep waiting
        while not self._stopped:
            self._prune(time.monotonic())
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = self._pending[0]
            while (not self._stopped
                   and self._ready_inputs(oldest.key) < self.config.max_batch_size
                   and (wait := self._close_at(oldest) - time.monotonic()) > 0):
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except TimeoutError:
                    break
            self._prune(time.monotonic())
            if self._pending and not self._stopped:
                batch = self._take_batch(self._pending[0].key)
                self._running = True
                busy_since = busy_since or time.monotonic()
                try:
                    await self._run(batch)
                finally:
                    self._running = False
                # Wall time, with the loop's own work between batches (see _step_loop).
                ended = time.monotonic()
                self._observe_throughput(sum(len(i.inputs) for i in batch), ended - busy_since)
                busy_since = ended if self._pending else None

    async def _run(self, batch: list[_Pending]) -> None:
        now = self._batch_started = time.monotonic()
        for item in batch:
            metrics.QUEUE_WAIT_SECONDS.labels(self.model).observe(now - item.enqueued)
        metrics.BATCH_SIZE.labels(self.model).observe(sum(len(item.inputs) for item in batch))

        def run(items: list[_Pending]) -> Sequence[Any]:
            inputs = [x for item in items for x in item.inputs]
            results = self._run_batch(batch[0].key, inputs)
            if len(results) != len(inputs):
                raise RuntimeError(f"model returned {len(results)} results for "
                                   f"{len(inputs)} inputs")
            return results

        try:
            groups, failed = await asyncio.get_running_loop().run_in_executor(
                self._executor, run_isolating, run, batch, self.model)
        finally:
            seconds = time.monotonic() - now
            metrics.INFERENCE_SECONDS.labels(self.model).observe(seconds)
            self._served.append(seconds)
        for item, error in failed:
            if not item.future.done():
                item.future.set_exception(error)
        answered = 0
        for items, results in groups:
            offset = 0
            for item in items:
                if not item.future.done():
                    item.future.set_result(list(results[offset:offset + len(item.inputs)]))
                offset += len(item.inputs)
                answered += 1
                if answered % ANSWER_BURST == 0:
                    await asyncio.sleep(0)  # requests arriving meanwhile are heard in between
        self._answered, self._since_answer = (time.monotonic(), len(batch)), 0

    async def _step_loop(self) -> None:
        """Step scheduling on the event loop: admits queued parts into starts, tells the
        decoder which inputs left, and answers what it finished. Wakes on news, and
        every 50 ms while requests wait or decode (deadlines)."""
        loop = asyncio.get_running_loop()
        decoding = loop.run_in_executor(self._executor, self._decode_forever, loop)
        while not self._stopped:
            self._prune(time.monotonic())
            leaving = self._leaving(time.monotonic())
            if leaving:
                self._decoder.leave(leaving)
            self._start()
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(),
                                       0.05 if self._pending or self._decoding else None)
        await decoding

    def _decode_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        """The decode thread: waits for the decoder's news and posts each batch of
        finished inputs and progress to the event loop without waiting for it."""
        while not self._stopped:
            try:
                finished, progress = self._decoder.step()
            except Exception as error:  # the model failed: every decoding request hears it
                log.exception("decoding step failed on model %s", self.model)
                self._decoder.reset()
                loop.call_soon_threadsafe(self._fail_decoding, error)
                continue
            # even with nothing to answer: the news may be that a started group joined
            loop.call_soon_threadsafe(self._answer, finished, progress)

    def _answer(self, finished: list, progress: list) -> None:
        """On the event loop: delivers a step's progress and finished inputs."""
        for item, index, partial in progress:
            if item.on_progress and item in self._decoding and not item.future.done():
                try:
                    item.on_progress(item.offset + index, partial)
                except Exception as error:  # that stream fails (and leaves); not the others
                    log.exception("progress callback failed on model %s", self.model)
                    item.future.set_exception(error)
                    self._arrived.set()  # it leaves the decode at the loop's next turn
        now = time.monotonic()
        for item, index, result in finished:
            results = self._decoding.get(item)
            if results is None:  # left (cancelled) meanwhile
                continue
            results[index] = result
            if all(r is not None for r in results):
                del self._decoding[item]
                self._served.append(now - item.started)
                if not item.future.done():
                    item.future.set_result(results)
        self._start()  # room for queued parts, or a start no longer waiting

    def _fail_decoding(self, error: Exception) -> None:
        """On the event loop, after a failed step: every decoding request hears it (those
        still starting leave as soon as they join)."""
        for item in self._decoding:
            if not item.future.done():
                item.future.set_exception(error)
        # those that joined a new decode since it failed leave it
        self._decoder.leave(set(self._decoding))
        self._decoding.clear()
        self._start()

    def _start(self) -> None:
        """On the event loop: starts the oldest queued parts that fit in the running decode
        on the start thread, unless a start is running or a started group still waits to
        join (parts queued meanwhile start together, next)."""
        if self._starting or self._stopped or self._decoder.joining:
            return
        joining = self._take_joining()
        if not joining:
            return
        self._starting = True
        future = asyncio.get_running_loop().run_in_executor(
            self._starter, run_isolating, self._decoder.start,
            [(item, item.inputs) for item in joining], self.model)
        future.add_done_callback(lambda done: self._on_started(joining, done))

    def _on_started(self, joining: list[_Pending], done: asyncio.Future) -> None:
        """On the event loop: the started groups join the running decode; a part whose
        input broke `begin` alone fails (`run_isolating`), the others go on."""
        self._starting = False
        error = (BatcherClosed("stopped") if done.cancelled() else done.exception())
        failed: list[tuple[_Pending, Exception]] = []
        if error is None and not self._stopped:
            groups, alone = done.result()
            failed = [(item, failure) for (item, _), failure in alone]
            try:
                for _, started in groups:
                    self._decoder.join(started)
                # parts that left while they were starting join only to be dropped
                self._decoder.leave({item for item in joining if item not in self._decoding})
            except Exception as join_error:
                error = join_error
        if error is not None:  # the running decode goes on
            log.error("starting %d inputs failed on model %s", len(joining), self.model,
                      exc_info=None if done.cancelled() else error)
            failed = [(item, error) for item in joining]
        for item, failure in failed:
            self._decoding.pop(item, None)
            if not item.future.done():
                item.future.set_exception(failure)
        self._start()

    def _leaving(self, now: float) -> set[_Pending]:
        """Decoding parts whose client cancelled or whose deadline passed."""
        leaving = set()
        for item in self._decoding:
            if item.expired(now) and not item.future.done():
                item.future.set_exception(DeadlineExpired("deadline passed while decoding"))
            if item.future.done():
                leaving.add(item)
        for item in leaving:
            del self._decoding[item]
        return leaving

    def _room(self) -> int:
        """Inputs the running decode can still take."""
        return self.config.max_batch_size - sum(len(r) for r in self._decoding.values())

    def _take_joining(self) -> list[_Pending]:
        """Oldest queued parts first, while the running decode has room for them."""
        room = self._room()
        joining, now = [], time.monotonic()
        while self._pending and len(self._pending[0].inputs) <= room:
            item = self._pending.popleft()
            room -= len(item.inputs)
            joining.append(item)
            self._decoding[item] = [None] * len(item.inputs)
            item.started = now
            metrics.QUEUE_WAIT_SECONDS.labels(self.model).observe(now - item.enqueued)
        metrics.QUEUE_DEPTH.labels(self.model).set(self.queued_inputs)
        self._observe_turnover(now, sum(len(item.inputs) for item in joining))
        return joining

    def _observe_turnover(self, now: float, taken: int) -> None:
        """Feeds the slot turnover that admission uses: while inputs wait for room, the
        decode is full and takes a new input each time one leaves."""
        if not self._pending:
            self._full = None
        elif self._full is None:
            self._full = (now, 0)
        else:
            since, count = self._full[0], self._full[1] + taken
            self._full = (since, count)
            if now - since >= 0.25 and count:
                self._turnover.add(self.config.max_batch_size * (now - since) / count)
                self._full = (now, 0)
