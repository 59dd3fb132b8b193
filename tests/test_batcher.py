"""The dynamic batcher on its own, with a plain Python model (no TensorFlow needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batcher import Batcher, BatcherClosed, BatchingConfig, DeadlineExpired, QueueFull


class Model:
    """Upper-cases its inputs; records every batch; can be held to build up a queue."""

    def __init__(self, fail_on: str = ""):
        self.batches: list[tuple[object, list[str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, key, inputs):
        self.gate.wait(10)
        self.batches.append((key, list(inputs)))
        if self.fail_on in inputs:
            raise ValueError("model exploded")
        return [f"{key}:{x.upper()}" for x in inputs]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def started(model, **config) -> Batcher:
    batcher = Batcher("m", model, BatchingConfig(**config))
    batcher.start()
    return batcher


def test_concurrent_requests_share_a_batch_and_keep_their_order():
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=8, batch_timeout_ms=50)
        results = await asyncio.gather(*(batcher.submit("k", [f"a{i}", f"b{i}"])
                                         for i in range(4)))
        await batcher.close()
        return model, results

    model, results = run(main())
    assert results == [[f"k:A{i}", f"k:B{i}"] for i in range(4)]
    assert len(model.batches) == 1 and len(model.batches[0][1]) == 8


def test_different_keys_never_share_a_batch():
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=8, batch_timeout_ms=50)
        results = await asyncio.gather(batcher.submit(1, ["x"]), batcher.submit(2, ["y"]),
                                       batcher.submit(1, ["z"]))
        await batcher.close()
        return model, results

    model, results = run(main())
    assert results == [["1:X"], ["2:Y"], ["1:Z"]]
    assert sorted((k, sorted(xs)) for k, xs in model.batches) == [(1, ["x", "z"]), (2, ["y"])]


def test_a_large_request_is_split_into_batches_and_reassembled():
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=3, batch_timeout_ms=1)
        result = await batcher.submit("k", [str(i) for i in range(8)])
        await batcher.close()
        return model, result

    model, result = run(main())
    assert result == [f"k:{i}" for i in range(8)]
    assert [len(xs) for _, xs in model.batches] == [3, 3, 2]


def test_a_full_queue_refuses_at_once_and_cancelled_requests_free_their_place():
    async def main():
        model = Model()
        model.gate.clear()  # the model is busy: requests pile up
        batcher = await started(model, max_batch_size=2, batch_timeout_ms=1, max_queue_size=4)
        running = asyncio.create_task(batcher.submit("k", ["r1", "r2"]))
        await asyncio.sleep(0.05)  # taken by the (blocked) model
        waiting = asyncio.create_task(batcher.submit("k", ["w1", "w2", "w3", "w4"]))
        await asyncio.sleep(0.01)
        started_at = time.monotonic()
        with pytest.raises(QueueFull):
            await batcher.submit("k", ["over"])
        refused_in = time.monotonic() - started_at
        waiting.cancel()
        await asyncio.sleep(0)
        late = asyncio.create_task(batcher.submit("k", ["l1"]))  # fits again at once
        model.gate.set()
        results = await asyncio.gather(running, late)
        await batcher.close()
        return model, results, refused_in

    model, results, refused_in = run(main())
    assert refused_in < 0.1
    assert results == [["k:R1", "k:R2"], ["k:L1"]]
    assert not any(x.startswith("w") for _, xs in model.batches for x in xs), \
        "a cancelled request must never reach the model"


def test_an_expired_request_costs_no_inference():
    async def main():
        model = Model()
        model.gate.clear()
        batcher = await started(model, max_batch_size=1, batch_timeout_ms=1)
        first = asyncio.create_task(batcher.submit("k", ["first"]))
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(batcher.submit("k", ["doomed"], time.monotonic() + 0.05))
        await asyncio.sleep(0.2)
        model.gate.set()
        await first
        with pytest.raises(DeadlineExpired):
            await doomed
        await batcher.close()
        return model

    model = run(main())
    assert [xs for _, xs in model.batches] == [["first"]]


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving():
    async def main():
        model = Model(fail_on="boom")
        batcher = await started(model, max_batch_size=4, batch_timeout_ms=20)
        outcome = await asyncio.gather(batcher.submit("k", ["boom"]), batcher.submit("k", ["ok"]),
                                       return_exceptions=True)
        after = await batcher.submit("k", ["fine"])
        await batcher.close()
        return outcome, after

    outcome, after = run(main())
    assert all(isinstance(o, ValueError) for o in outcome), "both shared the failed batch"
    assert after == ["k:FINE"]


def test_close_fails_queued_requests_and_refuses_new_ones():
    async def main():
        model = Model()
        model.gate.clear()
        batcher = await started(model, max_batch_size=1, batch_timeout_ms=1)
        running = asyncio.create_task(batcher.submit("k", ["running"]))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.submit("k", ["queued"]))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.05)
        model.gate.set()  # the running batch is allowed to finish
        await closing
        with pytest.raises(BatcherClosed):
            await queued
        with pytest.raises(BatcherClosed):
            await batcher.submit("k", ["new"])
        return await running

    assert run(main()) == ["k:RUNNING"]


def test_a_request_that_would_miss_its_deadline_is_refused_at_once():
    class Slow(Model):
        def __call__(self, key, inputs):
            time.sleep(0.05 * len(inputs))  # 20 inputs per second
            return super().__call__(key, inputs)

    async def main():
        model = Slow()
        batcher = await started(model, max_batch_size=4, batch_timeout_ms=1)
        await batcher.submit("k", ["a", "b", "c", "d"])  # measures the throughput
        backlog = [asyncio.create_task(batcher.submit("k", [f"q{i}"] * 4)) for i in range(5)]
        await asyncio.sleep(0.01)
        started_at = time.monotonic()
        with pytest.raises(QueueFull, match="after the request's deadline"):
            await batcher.submit("k", ["late"], deadline=time.monotonic() + 0.3)
        refused_in = time.monotonic() - started_at
        patient = await batcher.submit("k", ["patient"], deadline=time.monotonic() + 30)
        await asyncio.gather(*backlog)
        await batcher.close()
        return refused_in, patient

    refused_in, patient = run(main())
    assert refused_in < 0.05
    assert patient == ["k:PATIENT"]
