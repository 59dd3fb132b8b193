"""Step-level (continuous) decoding: inputs join a running beam search at the next
step and leave it as soon as they end, so a short input never waits for a long one.

It drives an export's `begin` and `advance` functions (`model/contract.py`), which
are the same `BeamSearch.initialize` / `step` / `finalize` that the task's signature
loops over in-graph (`advance` finalizes the inputs that end): one beam search, two
drivers. It knows inputs only as rows of values for `begin`'s inputs (texts, images,
prompts with their per-input options). Hypothesis tensors of different beam widths
cannot share a batch, so there is one running decode (a *lane*) per value of `begin`'s
scalar inputs (the beam width); every other option is per input.

A lane is one long TensorFlow call, on a thread of its own (`_run`): a graph loop that
calls `advance` for a few steps at a time (about the square root of its inputs' decode
length), hands the inputs that ended, with their
n-best, to a queue that `step` reads (the batcher's decode thread), and between calls
regroups its rows when a started group waits in its join queue (appending it), an
input left (its leave queue) or half its rows have ended: ended rows stay in the batch,
frozen, until then. An RNN decoder's state is a fixed-size tensor per hypothesis, so
joining is a concatenation and leaving a gather, in the same graph. No Python runs
between calls. Driving `advance` from Python (until 2026-12-05), a call had to take
several steps to spread its own cost (binding some 17 state tensors, regrouping the
rows: about a step's worth), and an input waited for the running call to end both to
join and to be answered: 16 captions in flight spent 24 of their 60 ms cycle outside
the decode, which held 9.6 of them on average.

Starting inputs (`start`: `begin`, which runs the encoder: a CNN over images, a
bidirectional RNN over texts) touches no running decode: the batcher runs it on a start
thread, beside the lanes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import tensorflow as tf

from model.beam_search import Beams, concat_rows, select_rows
from model.contract import (
    DECODE_STEPS,
    ENDED,
    PARTIAL_TEXTS,
    STEPS,
    FunctionContract,
    per_input,
)
from serving import metrics
from serving.moving_average import SMOOTHING
from serving.runner import padding_ratio
from serving.task import Outputs, Row

log = logging.getLogger(__name__)

Finished = tuple[Hashable, int, Outputs]
"""(ticket, index of the input in its ticket's rows, its outputs)."""

Progress = tuple[Hashable, int, str]
"""(ticket, index, the input's settled output so far), from exports that stream."""

QUEUE_CAPACITY = 4096  # news waiting to be read; a lane blocks beyond it
MIN_STEPS_PER_CALL = 2  # per `advance` call of a lane (`_run`)
MAX_STEPS_PER_CALL = 8  # a lone input's; longer calls delay streams' first chunk
WAITING = 1.5  # calls an input that shares its calls waits for in its life (`_run`)
FAILED = -1  # the id in the news a failing lane sends to wake `step`


@dataclass(frozen=True)
class _Row:
    ticket: Hashable  # the caller's handle for the request the input belongs to
    index: int
    source_tokens: int
    lane: tuple  # the value of the shared inputs: its lane


@dataclass
class Started:
    """Inputs whose search `begin` started, per value of the shared inputs: ready to
    join the running decode of that value."""

    groups: dict[tuple, tuple[Beams, list[_Row]]]


class _Lane:
    """One running decode: its input queues (started groups: ids and search state;
    ids that left) and the thread in its loop."""

    def __init__(self, name: str, join_types: list[tf.DType]):
        self.name = name
        self.joins = tf.queue.FIFOQueue(QUEUE_CAPACITY, join_types)
        self.leaves = tf.queue.FIFOQueue(QUEUE_CAPACITY, [tf.int64])
        self.thread: threading.Thread | None = None
        self.closed = False


def _traced_once(function):
    """The one concrete function of a restored tf.function. Calling it directly matters:
    the restored function would trace a new wrapper for every new input shape (every
    new number of inputs, source length...), slowly and without bound."""
    (concrete,) = function.concrete_functions
    return concrete


def _unknown_shape(spec: tf.TensorSpec) -> tf.TensorShape:
    return tf.TensorShape([None] * spec.shape.rank)


class StepDecoder:
    """Continuous decoding of one loaded export (see the module docstring).

    `start` may run on any thread; `join` and `leave` on one thread at a time (the
    event loop), `step` on another (the batcher's decode thread).

    Args:
      model: name used for metric labels.
      saved_model: the loaded SavedModel, with begin and advance functions.
      begin: the task's contract for `begin`.
      stream_seconds: exports that stream: the running inputs' progress at most this
        often, besides after the first call of an input that joined.
    """

    def __init__(self, model: str, saved_model, begin: FunctionContract,
                 stream_seconds: float = 0.02):
        self.model = model
        self._name = model  # `model` is blank while warming up: lanes are named for this
        self._stream_seconds = tf.constant(stream_seconds, tf.float64)
        self._contract = begin
        self._shared = begin.shared_inputs  # values a running decode shares (beam width)
        self._begin = _traced_once(saved_model.begin)
        self._advance = _traced_once(saved_model.advance)
        self._spec = self._advance.structured_input_signature[0][0]  # Beams of specs
        _, outputs = self._advance.structured_outputs
        self._streams = PARTIAL_TEXTS in outputs
        # what `advance` answers for the inputs that ended, in this order
        self._answers = sorted(set(outputs) - {ENDED, STEPS, PARTIAL_TEXTS})
        self._join_types = [tf.int64] + [s.dtype for s in tf.nest.flatten(self._spec)]
        # news: ended ids, rows stepped, seconds stepping since the last news, the
        # answers, and with `_streams` every input's id and settled text
        self._news_types = ([tf.int64, tf.int32, tf.float64]
                            + [outputs[k].dtype for k in self._answers]
                            + ([tf.int64, tf.string] if self._streams else []))
        self._news = tf.queue.FIFOQueue(QUEUE_CAPACITY, self._news_types)
        queue = tf.TensorSpec([], tf.resource)
        self._loop = tf.function(self._run).get_concrete_function(
            queue, queue, queue, self._spec)
        self._select = tf.function(select_rows).get_concrete_function(
            self._spec, tf.TensorSpec([None], tf.int32))
        self._lanes: dict[tuple, _Lane] = {}
        self._rows: dict[int, _Row] = {}  # id -> input, while it decodes
        self._ids = itertools.count()
        self._lock = threading.Lock()  # `_rows`, `_lanes` and `_failures`
        self._failures: list[Exception] = []  # lanes' errors, for `step` to raise
        self._failed: Exception | None = None  # read with other news: raised next

    @contextlib.contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Records no metrics meanwhile (warm-up is not traffic)."""
        label, self.model = self.model, ""
        try:
            yield
        finally:
            self.model = label

    def warm_up(self, rows: Sequence[Row]) -> None:
        """Decodes `rows` (one request's inputs) alone, twice, recording no metrics:
        TensorFlow optimises a function's graph at its first calls (without it a char
        LM's second decode took 121 ms where the third took 9)."""
        with self.unrecorded():
            for _ in range(2):
                self.join(self.start([("warm-up", rows)]))
                while self.rows:
                    self.step()

    @property
    def rows(self) -> int:
        """Inputs decoding or about to."""
        return len(self._rows)

    @property
    def joining(self) -> int:
        """Started groups not yet taken by their running decode: while one waits, the
        inputs queued meanwhile are better started later, together (a `begin` call costs
        about as much for one text as for several: the encoder's steps)."""
        with self._lock:
            lanes = list(self._lanes.values())
        return sum(int(lane.joins.size()) for lane in lanes if not lane.closed)

    def start(self, entries: Sequence[tuple[Hashable, Sequence[Row]]]) -> Started:
        """Runs `begin` on new inputs (each row holding every input of `begin`), one call
        per beam width. Safe on any thread: it reads no running decode."""
        groups: dict[tuple, list[tuple[Hashable, int, Row]]] = {}
        for ticket, rows in entries:
            for index, row in enumerate(rows):
                shared = tuple(row[name] for name in self._shared)
                groups.setdefault(shared, []).append((ticket, index, row))
        started = {}
        for shared, inputs in groups.items():
            beams, source_tokens = self._begin(
                **self._contract.arguments([row for *_, row in inputs]))
            started[shared] = (beams, [
                _Row(ticket, index, n, shared) for (ticket, index, _), n
                in zip(inputs, source_tokens.numpy().tolist(), strict=True)])
        return Started(started)

    def join(self, started: Started) -> None:
        """Started inputs join the running decode of their beam width at its next step."""
        for shared, (beams, rows) in started.groups.items():
            ids = [next(self._ids) for _ in rows]
            with self._lock:
                lane = self._lanes.get(shared) or self._open(shared, beams)
                self._rows.update(zip(ids, rows, strict=True))
            lane.joins.enqueue([tf.constant(ids, tf.int64), *tf.nest.flatten(beams)])

    def leave(self, tickets: set[Hashable]) -> None:
        """Drops the inputs of `tickets` (cancelled, or past their deadline) before the
        next step."""
        leaving: dict[tuple, list[int]] = {}
        with self._lock:
            for id_, row in list(self._rows.items()):
                if row.ticket in tickets:
                    leaving.setdefault(row.lane, []).append(id_)
                    del self._rows[id_]
            lanes = [(self._lanes.get(shared), ids) for shared, ids in leaving.items()]
        for lane, ids in lanes:
            if lane is not None and not lane.closed:
                lane.leaves.enqueue([tf.constant(ids, tf.int64)])

    def step(self) -> tuple[list[Finished], list[Progress]]:
        """Waits for news of the running decodes: returns the inputs that ended since
        and, for exports that stream, every other input's settled output so far. Raises
        the error a decode failed with; returns nothing once closed."""
        if self._failed is not None:
            failure, self._failed = self._failed, None
            raise failure
        try:
            news = [self._news.dequeue()]
            news += [self._news.dequeue() for _ in range(int(self._news.size()))]
        except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
            return [], []  # closed
        finished: list[Finished] = []
        progress: dict[tuple[Hashable, int], str] = {}
        for item in news:
            if item[0].shape[0] and int(item[0][0]) == FAILED:
                with self._lock:  # none left: a lane that `reset` stopped anyway
                    failure = self._failures.pop(0) if self._failures else None
                self._failed = self._failed or failure
                continue
            more, partial = self._read(item)
            finished += more
            progress.update(partial)
        if self._failed is not None and not finished:
            failure, self._failed = self._failed, None
            raise failure  # else next time: the inputs that ended first are answered
        return finished, [(*key, text) for key, text in progress.items()]

    def _read(self, news: list[tf.Tensor]
              ) -> tuple[list[Finished], dict[tuple[Hashable, int], str]]:
        """One piece of news: the inputs that ended, the others' progress."""
        ended, rows, seconds, *answers = news
        ended = ended.numpy().tolist()
        *answers, ids, texts = answers if self._streams else (*answers, None, None)
        ids = [] if ids is None else ids.numpy().tolist()
        with self._lock:  # once: ended inputs leave, the others' progress
            done = [self._rows.pop(id_, None) for id_ in ended]  # None: it left meanwhile
            streaming = [self._rows.get(i) for i in ids]
            sources = [row.source_tokens for row in self._rows.values()] if self.model else []
        if self.model and seconds > 0:  # not the news of a group taken
            metrics.INFERENCE_SECONDS.labels(self.model).observe(float(seconds))
            metrics.BATCH_SIZE.labels(self.model).observe(int(rows))
            metrics.PADDING_RATIO.labels(self.model).observe(padding_ratio(sources))
        finished: list[Finished] = []
        if ended:
            results = dict(zip(self._answers, (a.numpy() for a in answers), strict=True))
            for row, outputs in zip(done, per_input(results, len(ended)), strict=True):
                if row is None:
                    continue
                if self.model:
                    metrics.DECODE_STEPS.labels(self.model).observe(int(outputs[DECODE_STEPS]))
                finished.append((row.ticket, row.index, outputs))
        progress = {}
        if streaming:  # of the inputs still decoding
            progress = {(row.ticket, row.index): text.decode("utf-8", "replace")
                        for row, text in zip(streaming, texts.numpy(), strict=True)
                        if row is not None}
        return finished, progress

    def reset(self) -> None:
        """Forgets every running input and stops every lane (after a failed step)."""
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
            self._rows.clear()
            self._failures.clear()
        self._failed = None
        self._close_lanes(lanes)

    def close(self) -> None:
        """Stops every lane; `step` returns nothing from then on."""
        self.reset()
        self._news.close(cancel_pending_enqueues=True)

    def _close_lanes(self, lanes: list[_Lane]) -> None:
        for lane in lanes:
            lane.closed = True
            lane.joins.close(cancel_pending_enqueues=True)
        for lane in lanes:
            if lane.thread is not threading.current_thread():
                lane.thread.join()

    def _open(self, shared: tuple, beams: Beams) -> _Lane:
        """A lane for inputs of `shared`, its loop running (holding `_lock`)."""
        name = f"decode-{self._name}-{'-'.join(map(str, shared))}"
        lane = self._lanes[shared] = _Lane(name, self._join_types)
        empty = self._select(beams, tf.zeros([0], tf.int32))
        lane.thread = threading.Thread(target=self._serve, args=(lane, empty), name=lane.name,
                                       daemon=True)
        lane.thread.start()
        return lane

    def _serve(self, lane: _Lane, empty: Beams) -> None:
        """A lane's thread: its loop, until closed or failed."""
        try:
            self._loop(lane.joins.queue_ref, lane.leaves.queue_ref, self._news.queue_ref, empty)
        except Exception as error:
            if lane.closed:
                return
            log.error("the running decode %s failed", lane.name)
            with self._lock:
                self._failures.append(error)
                self._lanes = {k: v for k, v in self._lanes.items() if v is not lane}
            lane.closed = True
            with contextlib.suppress(tf.errors.CancelledError):  # closed meanwhile
                self._news.enqueue([
                    tf.constant([FAILED], tf.int64),
                    *(tf.zeros([0], dtype) for dtype in self._news_types[1:])])

    def _run(self, joins: tf.Tensor, leaves: tf.Tensor, news: tf.Tensor, empty: Beams
             ) -> tf.Tensor:
        """The lane's loop (traced once): steps its inputs until `joins` is closed,
        waiting for inputs while it has none.

        Loop state: the search `beams` [rows, ...], each row's `ids` [rows], whether it
        ended (and was told: `ended` [rows]), the `seconds` stepped since the last news,
        when streams last heard their progress (`spoke`, a timestamp), and the steps an
        input decodes (`length`, a moving average over the inputs that ended). An ended row
        stays in the batch, frozen, until the next regrouping: when a started group
        waits, an input left, or half the rows have ended (each regrouping copies every
        row's state: about 2 ms at 64 quick translations, a quarter of their step, and
        one of them ends at most steps). `gone`: ids that left before they joined.

        Calls of s steps: a call has its own cost c (its loop's set-up, finalizing the
        ended rows, regrouping, news), while an input that shares calls waits for them:
        past its own end until the call ends, and to join until the running one does.
        With steps of p seconds, inputs of L steps and a share w = 1 - 1/n of an input's
        calls shared with others (n inputs), an input's time is about L (p + c / s) +
        WAITING w s p, least at s = sqrt(L c / (WAITING w p)); with c about p, as
        measured for the Python-driven calls of 2026-12-03, s = sqrt(L / (WAITING w)),
        between MIN_ and MAX_STEPS_PER_CALL (MIN_ until an input ended; MAX_ for a lone
        input, w = 0: nobody waits on its calls): 6 steps for 16
        quick translations of 46, 3 for 16 captions of 10, 8 for char LM streams of 200
        characters (whose first chunk waits for a call: calls of up to 16 steps served 64
        streams 10 % faster than calls of 8 but put their first chunk p50 from 34 to 46 ms
        at 16 streams). A lone quick translation: 15.5 / 17.6 / 18.3 sentences/s at
        2 / 8 / 32 steps a call.
        Against calls of a fixed 2 steps (until 2026-12-05) this rule served 4, 16 and
        64 quick translations 7-10, 8-16 and 22-23 % more a second, captions as many
        (the README).

        Streams hear their progress after the first call of an input that joined, then
        every `stream_seconds` at most (`spoke`: when they last did): news after every
        call, each a gRPC message per stream, served a lone char LM stream 1,343
        characters/s where calls of 100 ms had served 2,430.
        """
        vector = tf.TensorShape([None])
        scalar = tf.TensorShape([])
        invariants = (tf.nest.map_structure(_unknown_shape, self._spec), vector, vector,
                      scalar, scalar, scalar, vector)

        def regroup(beams, ids, ended, spoke, gone):
            """Drops the rows that ended, takes every started group waiting (waits for
            one if no row is left; an empty batch keeps no width of its own), then drops
            the rows that left, and tells `news` if it took a group. Ids that left
            before their group was taken (`_on_started` joins and leaves at once) wait
            in `gone` for it."""
            rows = tf.where(tf.logical_not(ended))[:, 0]
            beams, ids = select_rows(beams, rows), tf.gather(ids, rows)
            before = tf.size(ids)

            def take(beams, ids):
                element = tf.raw_ops.QueueDequeueV2(handle=joins,
                                                    component_types=self._join_types)
                group = tf.nest.map_structure(  # a queue's elements have no known rank
                    lambda t, spec: tf.ensure_shape(t, _unknown_shape(spec)),
                    tf.nest.pack_sequence_as(self._spec, element[1:]), self._spec)
                beams = tf.cond(tf.size(ids) == 0, lambda: group,
                                lambda: concat_rows([beams, group]))
                return beams, tf.concat([ids, tf.ensure_shape(element[0], [None])], 0)

            beams, ids = tf.cond(tf.size(ids) == 0, lambda: take(beams, ids),
                                 lambda: (beams, ids))
            beams, ids = tf.while_loop(
                lambda *_: tf.raw_ops.QueueSizeV2(handle=joins) > 0, take, (beams, ids),
                shape_invariants=(invariants[0], invariants[1]))
            took = tf.size(ids) > before

            def tell() -> tf.Tensor:  # the batcher may start the next group
                with tf.control_dependencies([tf.raw_ops.QueueEnqueueV2(
                        handle=news, components=[
                            tf.zeros([0], tf.int64), tf.size(ids),
                            tf.constant(0.0, tf.float64),
                            *(tf.zeros([0], dtype) for dtype in self._news_types[3:])])]):
                    return tf.constant(0.0, tf.float64)  # streams: due at once

            spoke = tf.cond(took, tell, lambda: spoke)
            gone = tf.cond(tf.raw_ops.QueueSizeV2(handle=leaves) > 0, lambda: tf.concat(
                [gone, tf.raw_ops.QueueDequeueV2(
                    handle=leaves, component_types=[tf.int64])[0]], 0), lambda: gone)
            left = tf.equal(ids[:, None], gone[None, :])  # [rows, gone]
            rows = tf.where(tf.logical_not(tf.reduce_any(left, axis=1)))[:, 0]
            beams, ids = tf.cond(tf.reduce_any(left), lambda: (
                select_rows(beams, rows), tf.gather(ids, rows)), lambda: (beams, ids))
            gone = tf.boolean_mask(gone, tf.logical_not(tf.reduce_any(left, axis=0)))
            return beams, ids, tf.zeros_like(ids, tf.bool), spoke, gone

        def advance(beams, ids, ended, seconds, spoke, length):
            """A call of sqrt(length / (WAITING w)) steps, within MIN_ and
            MAX_STEPS_PER_CALL; news if an input ended or a stream's progress is due
            (`step` reads what has come meanwhile at once: a slower reader gets the news
            in fewer, larger pieces)."""
            live = tf.cast(tf.size(ids) - tf.reduce_sum(tf.cast(ended, tf.int32)), tf.float64)
            sharing = 1 - 1 / live  # w: 0 for a lone input, whose calls nobody waits on
            best = tf.where(sharing > 0, tf.round(tf.sqrt(length / (WAITING * sharing))),
                            MAX_STEPS_PER_CALL)
            steps = tf.clip_by_value(tf.cast(best, tf.int32), MIN_STEPS_PER_CALL,
                                     MAX_STEPS_PER_CALL)
            began = tf.timestamp()
            with tf.control_dependencies([began]):
                after, out = self._advance(beams, steps)
            with tf.control_dependencies(tf.nest.flatten(out)):
                seconds += tf.timestamp() - began
            new = out[ENDED] & tf.logical_not(ended)  # `advance` answers every ended row
            is_new = tf.gather(new, tf.where(out[ENDED])[:, 0])

            speaks = self._streams & (tf.timestamp() - spoke >= self._stream_seconds)

            def tell() -> tuple[tf.Tensor, tf.Tensor]:
                extra = [ids, out[PARTIAL_TEXTS]] if self._streams else []
                with tf.control_dependencies([tf.raw_ops.QueueEnqueueV2(
                        handle=news, components=[
                            tf.boolean_mask(ids, new), tf.size(ids), seconds,
                            *(tf.boolean_mask(out[k], is_new) for k in self._answers),
                            *extra])]):
                    return tf.zeros_like(seconds), tf.where(speaks, tf.timestamp(), spoke)

            seconds, spoke = tf.cond(tf.reduce_any(new) | speaks, tell,
                                     lambda: (seconds, spoke))
            lengths = tf.cast(tf.boolean_mask(out[DECODE_STEPS], is_new), tf.float64)
            length = tf.cond(tf.size(lengths) > 0, lambda: tf.where(
                length > 0, length + SMOOTHING * (tf.reduce_mean(lengths) - length),
                tf.reduce_mean(lengths)), lambda: length)
            return after, ids, out[ENDED], seconds, spoke, length

        def body(beams, ids, ended, seconds, spoke, length, gone):
            dead = tf.reduce_sum(tf.cast(ended, tf.int32))
            due = ((2 * dead >= tf.size(ids)) | (tf.raw_ops.QueueSizeV2(handle=joins) > 0)
                   | (tf.raw_ops.QueueSizeV2(handle=leaves) > 0))
            beams, ids, ended, spoke, gone = tf.cond(
                due, lambda: regroup(beams, ids, ended, spoke, gone),
                lambda: (beams, ids, ended, spoke, gone))
            return (*tf.cond(tf.size(ids) > 0,
                             lambda: advance(beams, ids, ended, seconds, spoke, length),
                             lambda: (beams, ids, ended, seconds, spoke, length)), gone)

        def running(*_) -> tf.Tensor:
            return tf.logical_not(tf.raw_ops.QueueIsClosedV2(handle=joins))

        never = tf.constant(0.0, tf.float64)
        state = (empty, tf.zeros([0], tf.int64), tf.zeros([0], tf.bool), never, never,
                 tf.constant(0.0, tf.float64), tf.zeros([0], tf.int64))
        return tf.while_loop(running, body, state, shape_invariants=invariants)[3]
