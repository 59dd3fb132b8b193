"""The dynamic batcher on its own, with a plain Python model (no TensorFlow needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batcher import (
    Batcher,
    BatcherClosed,
    BatchingConfig,
    DeadlineExpired,
    InputFailed,
    QueueFull,
)


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
    batcher = Batcher("m", model, BatchingConfig(**{"scheduling": "request", **config}))
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


def test_a_request_after_a_quiet_spell_runs_at_once_and_close_ones_wait_for_company():
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=2, batch_timeout_ms=3000)
        # alone: answered long before the 3 s timeout would have let it go
        lone = await asyncio.wait_for(batcher.submit("k", ["a"]), 1.5)
        # right after it: traffic is dense, so "b" waits for "c" to share its batch
        second = batcher.submit("k", ["b"])
        await asyncio.sleep(0.05)
        third = batcher.submit("k", ["c"])
        together = await asyncio.gather(second, third)
        await batcher.close()
        return model, lone, together

    model, lone, together = run(main())
    assert lone == ["k:A"] and together == [["k:B"], ["k:C"]]
    assert [inputs for _, inputs in model.batches] == [["a"], ["b", "c"]]


def test_clients_answered_together_come_back_to_one_batch():
    """Closed-loop clients send again right after their answers: the first back must not
    run alone (its batch then alternates with the others' for good), however long the
    batch before took."""
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=8, batch_timeout_ms=100)

        async def client(delay: float, name: str):
            first = await batcher.submit("k", [f"{name}1"])
            await asyncio.sleep(delay)  # back one after another, 40 ms apart
            return first, await batcher.submit("k", [f"{name}2"])

        model.gate.clear()  # the first batch takes a while: a quiet spell before the next
        clients = asyncio.gather(*(client(0.04 * i, name) for i, name in enumerate("abcd")))
        await asyncio.sleep(0.3)
        model.gate.set()
        results = await clients
        await batcher.close()
        return model, results

    model, results = run(main())
    assert results == [([f"k:{n}1"], [f"k:{n}2"]) for n in "ABCD"]
    assert [sorted(inputs) for _, inputs in model.batches] == [
        ["a1", "b1", "c1", "d1"], ["a2", "b2", "c2", "d2"]]


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


def test_a_failing_batch_is_run_apart_and_only_the_request_that_breaks_the_model_fails():
    """A batch the model fails on is split in halves, down to single requests: the one
    whose input breaks the model fails alone (InputFailed, with the model's error), the
    seven others of its batch are answered, and the batcher keeps serving."""
    async def main():
        model = Model(fail_on="boom")
        batcher = await started(model, max_batch_size=8, batch_timeout_ms=20)
        texts = ["a", "b", "c", "boom", "d", "e", "f", "g"]
        outcome = await asyncio.gather(*(batcher.submit("k", [t]) for t in texts),
                                       return_exceptions=True)
        after = await batcher.submit("k", ["fine"])
        await batcher.close()
        return texts, outcome, after, model.batches

    texts, outcome, after, batches = run(main())
    assert [o for t, o in zip(texts, outcome, strict=True) if t != "boom"] == [
        [f"k:{t.upper()}"] for t in texts if t != "boom"]
    failure = outcome[texts.index("boom")]
    assert isinstance(failure, InputFailed) and isinstance(failure.error, ValueError)
    assert "model exploded" in str(failure)
    assert [inputs for _, inputs in batches] == [
        texts, texts[:4], ["a", "b"], ["c", "boom"], ["c"], ["boom"], texts[4:], ["fine"]]
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


def test_after_the_model_slows_down_what_is_admitted_is_still_answered_in_time():
    """Request scheduling: the 95th percentile of many fast batches lags a slowdown (in
    the server: the event loop taking CPU from the model under overload). Admission
    counts the latest batch's time at once: what it admits meets its deadline."""
    class Slowing(Model):
        seconds = 0.02

        def __call__(self, key, inputs):
            time.sleep(self.seconds)
            return super().__call__(key, inputs)

    async def main():
        model = Slowing()
        batcher = await started(model, max_batch_size=4, batch_timeout_ms=1)
        for _ in range(20):  # fast batches of 4, measured
            await batcher.submit("k", ["a", "b", "c", "d"])
        model.seconds = 0.1
        await batcher.submit("k", ["slow"])

        async def one(i: int) -> tuple[str, float]:
            sent = time.monotonic()
            try:
                await batcher.submit("k", [f"q{i}"], deadline=sent + 0.3)
            except QueueFull:
                return "refused", time.monotonic() - sent
            except DeadlineExpired:
                return "expired", time.monotonic() - sent
            return "answered", time.monotonic() - sent

        outcomes = await asyncio.gather(*(one(i) for i in range(12)))
        await batcher.close()
        return outcomes

    outcomes = run(main())
    answered = [seconds for outcome, seconds in outcomes if outcome == "answered"]
    assert answered, "nothing admitted"
    assert all(outcome != "expired" for outcome, _ in outcomes)
    assert max(answered) < 0.3, "an admitted request was answered after its deadline"
    assert any(outcome == "refused" for outcome, _ in outcomes), "12 cannot fit in 0.3 s"


def test_a_large_batch_is_answered_in_bursts_that_let_arriving_requests_in():
    """Request scheduling: a finished batch's requests are answered a few at a time, so a
    request arriving meanwhile is heard between bursts (in the server, its refusal is
    not held up behind 64 answers: 15-22 ms under overload) rather than after all."""
    async def main():
        batcher = await started(Model(), max_batch_size=32, batch_timeout_ms=50)
        answered: list[int] = []
        heard_after: list[int] = []  # answers given when the arriving request was heard

        async def request(i: int) -> None:
            await batcher.submit("k", [str(i)])
            if not answered:  # the first answer goes out; a request arrives
                asyncio.get_running_loop().call_soon(lambda: heard_after.append(len(answered)))
            answered.append(i)

        await asyncio.gather(*(request(i) for i in range(32)))
        await batcher.close()
        return heard_after

    (heard_after,) = run(main())
    assert heard_after < 32, "the arriving request waited for the whole batch's answers"


class Stepper:
    """A step decoder whose input "xN" ends after N steps; records the inputs of each step.
    Like the real one, it steps on by itself: `join` and `leave` come from the event loop
    while `step` (on the decode thread) runs a step and returns its news. Its started
    inputs join at once: none waits to join."""

    joining = 0

    def __init__(self, step_seconds: float = 0.002):
        self.step_seconds = step_seconds
        self.running: dict[tuple, list] = {}  # (ticket, index) -> [steps left, text]
        self.steps: list[list[str]] = []
        self.lock = threading.Lock()

    @property
    def rows(self) -> int:
        return len(self.running)

    def start(self, entries):
        return [(ticket, index, text) for ticket, texts in entries
                for index, text in enumerate(texts)]

    def join(self, started):
        with self.lock:
            for ticket, index, text in started:
                self.running[(ticket, index)] = [int(text[1:]), text]

    def leave(self, tickets):
        with self.lock:
            self.running = {k: v for k, v in self.running.items() if k[0] not in tickets}

    def step(self):
        """Each running input reports how many steps it has left, as its progress."""
        time.sleep(self.step_seconds)
        with self.lock:
            if not self.running:
                return [], []
            self.steps.append(sorted(text for _, text in self.running.values()))
            finished, progress = [], []
            for (ticket, index), entry in list(self.running.items()):
                entry[0] -= 1
                if entry[0] == 0:
                    del self.running[(ticket, index)]
                    finished.append((ticket, index, f"{entry[1]} done"))
                else:
                    progress.append((ticket, index, f"{entry[0]} left"))
            return finished, progress

    def reset(self):
        with self.lock:
            self.running.clear()

    def close(self):
        pass


async def stepping(decoder: Stepper, **config) -> Batcher:
    batcher = Batcher("m", Model(), BatchingConfig(**{"scheduling": "step", **config}), decoder)
    batcher.start()
    return batcher


def test_step_scheduling_lets_a_short_request_overtake_a_long_one():
    async def main():
        decoder = Stepper()
        batcher = await stepping(decoder, batch_timeout_ms=1)
        long = asyncio.create_task(batcher.submit("beam4", ["x300"]))
        await asyncio.sleep(0.05)
        short = await batcher.submit("beam1", ["x3", "x5"])  # other options may join too
        long_done_when_short_was = long.done()
        result = await long
        await batcher.close()
        return decoder, short, long_done_when_short_was, result

    decoder, short, long_was_done, result = run(main())
    assert short == ["x3 done", "x5 done"] and result == ["x300 done"]
    assert not long_was_done
    assert ["x3", "x300", "x5"] in decoder.steps, "the short inputs joined the running decode"
    assert len(decoder.steps) == 300, "the long input never restarted or paused"


def test_step_scheduling_keeps_to_max_batch_size_and_first_come_first_served():
    async def main():
        decoder = Stepper()
        batcher = await stepping(decoder, max_batch_size=2, batch_timeout_ms=20)
        results = await asyncio.gather(*(batcher.submit("k", [f"x{n}"]) for n in (4, 2, 3)))
        await batcher.close()
        return decoder, results

    decoder, results = run(main())
    assert results == [["x4 done"], ["x2 done"], ["x3 done"]]
    assert max(len(rows) for rows in decoder.steps) == 2
    assert decoder.steps[0] == ["x2", "x4"], "requests that arrived together start together"
    assert ["x3", "x4"] in decoder.steps, "the third joined when the shortest left"


def test_a_burst_past_capacity_is_refused_at_once_and_what_is_admitted_meets_its_deadline():
    """Step scheduling: a burst that fills the decode at once frees no slot for a whole
    decode. Admission must refuse at once what cannot finish in time, answer in time
    all it admits, and still admit what fits."""
    async def main():
        batcher = await stepping(Stepper(step_seconds=0.005), max_batch_size=4)
        await asyncio.gather(*(batcher.submit("k", ["x20"]) for _ in range(4)))  # measured

        async def one() -> tuple[str, float]:
            sent = time.monotonic()
            try:
                await batcher.submit("k", ["x20"], deadline=sent + 1.0)
                return "answered", time.monotonic() - sent
            except QueueFull:
                return "refused", time.monotonic() - sent
            except DeadlineExpired:
                return "late", time.monotonic() - sent

        outcomes = await asyncio.gather(*(one() for _ in range(48)))
        await batcher.close()
        return outcomes

    outcomes = run(main())
    answered = [s for kind, s in outcomes if kind == "answered"]
    refused = [s for kind, s in outcomes if kind == "refused"]
    assert len(answered) + len(refused) == 48, outcomes  # none late
    assert max(answered) < 1.0
    assert max(refused) < 0.05
    assert len(answered) >= 12, "four rounds of four fit in 80 % of the deadline"


def test_a_cancelled_or_expired_request_leaves_the_running_decode():
    async def main():
        decoder = Stepper()
        batcher = await stepping(decoder, batch_timeout_ms=1)
        cancelled = asyncio.create_task(batcher.submit("k", ["x100000"]))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(DeadlineExpired, match="while decoding"):
            await batcher.submit("k", ["x100001"], deadline=time.monotonic() + 0.3)
        await asyncio.sleep(0.05)  # it leaves at the next step
        rows_after = decoder.rows
        after = await batcher.submit("k", ["x2"])
        await batcher.close()
        return rows_after, after, len(decoder.steps)

    rows_after, after, steps = run(main())
    assert rows_after == 0
    assert after == ["x2 done"]
    assert steps < 1000  # 0.3 s of 2 ms steps, then the short one


@pytest.mark.parametrize("fails_in", ["step", "join"])
def test_a_failing_step_fails_the_decoding_requests_and_the_batcher_goes_on(fails_in):
    """Also when joining fails (concatenating a started input to the running decode):
    the decode thread must not die with requests left waiting forever."""
    class Exploding(Stepper):
        def step(self):
            if any(text == "x666" for _, text in self.running.values()):
                raise ValueError("model exploded")
            return super().step()

        def join(self, started):
            if fails_in == "join" and any(text == "x667" for *_, text in started):
                raise ValueError("join exploded")
            super().join(started)

    async def main():
        batcher = await stepping(Exploding(), batch_timeout_ms=1)
        with pytest.raises(ValueError, match="exploded"):
            await batcher.submit("k", ["x666" if fails_in == "step" else "x667"])
        after = await batcher.submit("k", ["x2"])
        await batcher.close()
        return after

    assert run(main()) == ["x2 done"]


def test_inputs_start_while_the_decode_steps_and_a_failed_start_fails_only_its_own():
    """Starting (the encoder) runs beside the running decode: a long input keeps
    stepping while others start, and an input the encoder cannot take fails alone."""
    class SlowStart(Stepper):
        def start(self, entries):
            if any("x666" in texts for _, texts in entries):
                raise ValueError("encoder exploded")
            time.sleep(0.05)  # 25 steps of the running decode
            return super().start(entries)

    async def main():
        decoder = SlowStart()
        batcher = await stepping(decoder)
        long = asyncio.ensure_future(batcher.submit("k", ["x200"]))
        await asyncio.sleep(0.1)
        steps_before = len(decoder.steps)
        short = await batcher.submit("k", ["x3"])
        steps_while_starting = len(decoder.steps) - steps_before
        with pytest.raises(InputFailed, match="encoder exploded"):
            await batcher.submit("k", ["x666"])
        result = await long
        await batcher.close()
        return short, result, steps_while_starting

    short, result, steps_while_starting = run(main())
    assert short == ["x3 done"] and result == ["x200 done"]
    assert steps_while_starting >= 10, "the decode paused while an input started"


def test_inputs_arriving_during_a_start_start_together_and_join_the_running_decode():
    """One start at a time: those queued while one runs make one start call between
    them, and join the running decode without waiting for it to end."""
    class Slow(Stepper):
        def __init__(self):
            super().__init__()
            self.starts: list[list[str]] = []

        def start(self, entries):
            self.starts.append([text for _, texts in entries for text in texts])
            time.sleep(0.1)
            return super().start(entries)

    async def main():
        decoder = Slow()
        batcher = await stepping(decoder)
        long = asyncio.ensure_future(batcher.submit("k", ["x200"]))
        arrivals = []
        for text in ("x1", "x2", "x3"):  # 20, 40 and 60 ms into the first start
            await asyncio.sleep(0.02)
            arrivals.append(asyncio.ensure_future(batcher.submit("k", [text])))
        results = await asyncio.gather(*arrivals)
        long_done = long.done()
        await long
        await batcher.close()
        return decoder, results, long_done

    decoder, results, long_done = run(main())
    assert results == [["x1 done"], ["x2 done"], ["x3 done"]]
    assert decoder.starts == [["x200"], ["x1", "x2", "x3"]], "one start for the three"
    assert ["x1", "x2", "x200", "x3"] in decoder.steps, "they joined the running decode"
    assert not long_done


def test_a_start_that_fails_is_run_apart_and_the_others_started_with_it_decode():
    """Inputs started together (`begin` in one call) and one of them breaks the encoder
    (an image that does not decode): the call is split in halves, the bad input fails
    alone and the others join the running decode and are answered."""
    class Picky(Stepper):
        def __init__(self):
            super().__init__()
            self.starts: list[list[str]] = []

        def start(self, entries):
            texts = [text for _, texts in entries for text in texts]
            self.starts.append(texts)
            time.sleep(0.05)
            if "x666" in texts:
                raise ValueError("encoder exploded")
            return super().start(entries)

    async def main():
        decoder = Picky()
        batcher = await stepping(decoder)
        first = asyncio.ensure_future(batcher.submit("k", ["x5"]))
        await asyncio.sleep(0.02)  # during its start: the next three start together
        outcome = await asyncio.gather(*(batcher.submit("k", [t]) for t in ("x3", "x666",
                                                                          "x4")),
                                       return_exceptions=True)
        await first
        await batcher.close()
        return decoder.starts, outcome

    starts, outcome = run(main())
    assert outcome[0] == ["x3 done"] and outcome[2] == ["x4 done"]
    assert isinstance(outcome[1], InputFailed) and "encoder exploded" in str(outcome[1])
    assert starts == [["x5"], ["x3", "x666", "x4"], ["x3"], ["x666", "x4"], ["x666"], ["x4"]]


def test_request_batches_group_inputs_of_similar_length():
    """When more requests wait than fit, the oldest goes with those closest to it in
    length; the others form the next batch (padding stays small)."""
    async def main():
        model = Model()
        model.gate.clear()  # hold the first batch so that the rest queue up
        batcher = await started(model, max_batch_size=3, batch_timeout_ms=1)
        first = asyncio.create_task(batcher.submit("k", ["hold"]))
        await asyncio.sleep(0.05)
        texts = ["a", "b" * 40, "c", "d" * 41, "e" * 2, "f" * 39]
        tasks = [asyncio.create_task(batcher.submit("k", [t])) for t in texts]
        await asyncio.sleep(0.05)
        model.gate.set()
        results = await asyncio.gather(first, *tasks)
        await batcher.close()
        return model, results

    model, results = run(main())
    assert [r[0] for r in results[1:]] == [f"k:{t.upper()}" for t in
                                           ["a", "b" * 40, "c", "d" * 41, "e" * 2, "f" * 39]]
    assert [sorted(len(x) for x in batch) for _, batch in model.batches[1:]] == [
        [1, 1, 2], [39, 40, 41]]


def test_a_request_near_its_deadline_is_not_left_behind_for_its_length():
    async def main():
        model = Model()
        batcher = await started(model, max_batch_size=2, batch_timeout_ms=1)
        model.gate.clear()
        first = asyncio.create_task(batcher.submit("k", ["hold"]))
        await asyncio.sleep(0.2)  # a batch takes 0.2 s: that is the service time now
        model.gate.set()
        await first
        model.gate.clear()
        second = asyncio.create_task(batcher.submit("k", ["hold"]))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(batcher.submit("k", ["a"])),
                 asyncio.create_task(batcher.submit("k", ["b" * 40],
                                                    deadline=time.monotonic() + 1.0)),
                 asyncio.create_task(batcher.submit("k", ["c"]))]
        await asyncio.sleep(0.5)  # "b" is due before a batch after next could end
        model.gate.set()
        await asyncio.gather(second, *tasks)
        await batcher.close()
        return model

    model = run(main())
    assert [sorted(batch) for _, batch in model.batches[2:]] == [["a", "b" * 40], ["c"]]


def test_a_streaming_request_hears_each_step_and_leaves_when_cancelled():
    """Per-step delivery: progress reaches the request's callback (with the input's index
    in the request, across batch-sized parts) at every step; cancelling the stream frees
    its rows at the next step."""
    async def main():
        decoder = Stepper()
        batcher = await stepping(decoder, batch_timeout_ms=1, max_batch_size=2)
        heard: list[tuple[int, str]] = []
        result = await batcher.submit("k", ["x2", "x1", "x3"],
                                      on_progress=lambda i, text: heard.append((i, text)))
        endless: list[tuple[int, str]] = []
        stream = asyncio.ensure_future(batcher.submit(
            "k", ["x100000"], on_progress=lambda i, text: endless.append((i, text))))
        while len(endless) < 3:
            await asyncio.sleep(0.005)
        stream.cancel()
        after = await batcher.submit("k", ["x2"])
        await batcher.close()
        return result, heard, endless, after, decoder

    result, heard, endless, after, decoder = run(main())
    assert result == ["x2 done", "x1 done", "x3 done"]
    assert (0, "1 left") in heard and (2, "2 left") in heard and (2, "1 left") in heard
    assert not any(i == 1 for i, _ in heard), "x1 ends at its first step: nothing to stream"
    assert endless[:3] == [(0, "99999 left"), (0, "99998 left"), (0, "99997 left")]
    assert after == ["x2 done"]
    assert "x100000" not in decoder.steps[-1], "the cancelled stream left the decode"


def test_a_stream_whose_callback_fails_fails_alone_and_the_others_are_answered():
    """A failing progress callback (say, a client's writer) used to skip the rest of that
    step's delivery: requests finishing in the same step waited forever."""
    async def main():
        batcher = await stepping(Stepper(), batch_timeout_ms=1, max_batch_size=4)

        def broken(index: int, text: str) -> None:
            raise OSError("stream writer closed")

        outcome = await asyncio.gather(
            batcher.submit("k", ["x3"], on_progress=broken), batcher.submit("k", ["x3"]),
            batcher.submit("k", ["x1"]), return_exceptions=True)
        after = await batcher.submit("k", ["x2"])
        await batcher.close()
        return outcome, after

    outcome, after = run(main())
    assert isinstance(outcome[0], OSError) and outcome[1:] == [["x3 done"], ["x1 done"]]
    assert after == ["x2 done"]


def test_a_batcher_that_stops_on_its_own_error_fails_its_requests_and_says_so():
    """An error in the batcher's own loop (a bug, not the model's failure) used to leave
    its requests waiting forever and refuse new ones while the server looked healthy.
    Now every request fails at once with BatcherClosed (UNAVAILABLE: retry), the owner
    hears it (the registry reloads the model) and its thread ends (SIGTERM still works)."""
    def length(text: str) -> int:
        if text == "poison":
            raise TypeError("no length")
        return len(text)

    async def main():
        model, failures = Model(), []
        batcher = Batcher("m", model, BatchingConfig(scheduling="request", batch_timeout_ms=20),
                          input_length=length, on_failure=lambda: failures.append(True))
        batcher.start()
        began = time.monotonic()
        outcome = await asyncio.gather(batcher.submit("k", ["fine"]),
                                       batcher.submit("k", ["poison"]), return_exceptions=True)
        failed_in = time.monotonic() - began
        with pytest.raises(BatcherClosed):
            await batcher.submit("k", ["later"])
        await asyncio.wait_for(batcher.close(drain=True), 5)
        return outcome, failed_in, failures, batcher, model

    outcome, failed_in, failures, batcher, model = run(main())
    assert all(isinstance(o, BatcherClosed) for o in outcome), outcome
    assert "internal error" in str(outcome[0]) and failed_in < 1.0
    assert failures == [True] and batcher.failed and model.batches == []
