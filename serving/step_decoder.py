"""Step-level (continuous) decoding: inputs join a running beam search at the next
step and leave it as soon as they end, so a short input never waits for a long one.

It drives an export's `begin` and `advance` functions (`model/contract.py`), which
are the same `BeamSearch.initialize` / `step` / `finalize` that the task's signature
loops over in-graph (`advance` finalizes the inputs that end): one beam search, two
drivers. It knows inputs only as rows of values for `begin`'s inputs (texts, images,
prompts with their per-input options). Hypothesis tensors of different beam widths
cannot share a batch, so there is one running decode per value of `begin`'s scalar
inputs (the beam width); every other option is per input. An RNN decoder's state is a
fixed-size tensor per hypothesis, so joining is a concatenation and leaving a gather;
both happen in the same compiled call as the next step.

Starting inputs (`start`: `begin`, which runs the encoder: a CNN over images, a
bidirectional RNN over texts) touches no running decode, so the batcher runs it on a
start thread while its decode thread steps: TensorFlow runs both calls at once, and
the inputs that arrive meanwhile start together in the next call. Everything else is
for the decode thread alone.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
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
from serving.call_length import CallLength
from serving.moving_average import MovingAverage
from serving.runner import padding_ratio
from serving.task import Outputs, Row

Finished = tuple[Hashable, int, Outputs]
"""(ticket, index of the input in its ticket's rows, its outputs)."""

Progress = tuple[Hashable, int, str]
"""(ticket, index, the input's settled output so far), from exports that stream."""


@dataclass(frozen=True)
class _Row:
    ticket: Hashable  # the caller's handle for the request the input belongs to
    index: int
    source_tokens: int


@dataclass
class _Decode:
    """One running search: `beams` row i is input `rows[i]`, or a row to drop (None:
    ended or left) at the next step; `joining` waits to be added."""

    beams: Beams | None = None
    rows: list[_Row | None] = field(default_factory=list)
    joining: Beams | None = None
    joining_rows: list[_Row] = field(default_factory=list)

    @property
    def live(self) -> int:
        return sum(row is not None for row in self.rows) + len(self.joining_rows)


@dataclass
class Started:
    """Inputs whose search `begin` started, per value of the shared inputs: ready to
    join the running decode of that value."""

    groups: dict[tuple, tuple[Beams, list[_Row]]]


def _traced_once(function):
    """The one concrete function of a restored tf.function. Calling it directly matters:
    the restored function would trace a new wrapper for every new input shape (every
    new number of inputs, source length...), slowly and without bound."""
    (concrete,) = function.concrete_functions
    return concrete


def _regroup_and_advance(advance, pad: bool):
    """`advance` after keeping rows `keep` of a running search and appending the joining
    rows: one call to TensorFlow per step instead of two (each call costs about a
    millisecond of Python for the search state's tensors)."""
    def run(beams: Beams, keep: tf.Tensor, joining: Beams, steps: tf.Tensor):
        return advance(concat_rows([select_rows(beams, keep), joining], pad), steps)
    return run


def _concat(first: Beams, second: Beams) -> Beams:
    return concat_rows([first, second])


def _aligned(parts: Sequence[Beams]) -> bool:
    """Whether the parts' tensors (token buffers aside) agree in every dimension but
    the first, as an image captioner's always do: `concat_rows` need not pad them."""
    flat = [tf.nest.flatten(part._replace(tokens=())) for part in parts]
    return all(len({tuple(t.shape[1:]) for t in tensors}) == 1
               for tensors in zip(*flat, strict=True))


class StepDecoder:
    """Continuous decoding of one loaded export (see the module docstring).

    Args:
      model: name used for metric labels.
      saved_model: the loaded SavedModel, with begin and advance functions.
      begin: the task's contract for `begin`.
    """

    def __init__(self, model: str, saved_model, begin: FunctionContract):
        self.model = model
        self._contract = begin
        self._shared = begin.shared_inputs  # values a running decode shares (beam width)
        self._begin = _traced_once(saved_model.begin)
        self._advance = _traced_once(saved_model.advance)
        # Row bookkeeping as single compiled calls (dozens of eager ops otherwise), for
        # any number of inputs and any lengths, on the export's own search state (whose
        # fields may be older than this release's).
        spec = self._advance.structured_input_signature[0][0]
        rows = tf.TensorSpec([None], tf.int32)
        self._select = tf.function(select_rows).get_concrete_function(spec, rows)
        steps = tf.TensorSpec([], tf.int32)
        self._regroup_and_advance = {
            pad: tf.function(_regroup_and_advance(self._advance, pad)).get_concrete_function(
                spec, rows, spec, steps) for pad in (True, False)}
        # rare: a second started group waiting beside the first; padded, whatever shapes
        self._concat = tf.function(_concat).get_concrete_function(spec, spec)
        self._decodes: dict[tuple, _Decode] = {}
        self._call_lengths: dict[tuple, CallLength] = {}  # per value of the shared inputs
        self._start_seconds = MovingAverage()
        # time.monotonic() the running `advance` call is expected to end at (None
        # between calls, or before its decode's calls were timed): the batcher starts
        # new inputs shortly before, for the next call
        self.call_ends: float | None = None

    @property
    def start_seconds(self) -> float | None:
        """A `start`'s measured time (moving average; None before the first)."""
        return self._start_seconds.value

    @contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Records no metrics meanwhile (warm-up is not traffic)."""
        label, self.model = self.model, ""
        try:
            yield
        finally:
            self.model = label

    def warm_up(self, rows: Sequence[Row]) -> None:
        """Decodes `rows` (one request's inputs) alone, twice, then runs every compiled
        function once, recording no metrics: TensorFlow optimises a function's graph at
        its first calls, and a lone decode does not call them all. Without it the first
        requests paid: a char LM's second decode still took 121 ms where the third took
        9, and the first captions to join a running decode waited about 200 ms for the
        regrouping step."""
        with self.unrecorded():
            for _ in range(2):
                self.join(self.start([("warm-up", rows)]))
                while self.rows:
                    self.step()
            (beams, _), = self.start([("warm-up", rows)]).groups.values()
            first, one = tf.constant([0], tf.int32), tf.constant(1, tf.int32)
            self._advance(self._select(beams, first), one)
            self._concat(beams, beams)
            for regroup_and_advance in self._regroup_and_advance.values():
                regroup_and_advance(beams, first, beams, one)
        self._call_lengths.clear()  # what the warm-up measured is not traffic's
        self._start_seconds = MovingAverage()

    @property
    def rows(self) -> int:
        """Inputs decoding or about to."""
        return sum(d.live for d in self._decodes.values())

    def start(self, entries: Sequence[tuple[Hashable, Sequence[Row]]]) -> Started:
        """Runs `begin` on new inputs (each row holding every input of `begin`), one call
        per beam width. Safe on any thread: it reads no running decode."""
        began = time.perf_counter()
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
                _Row(ticket, index, n) for (ticket, index, _), n
                in zip(inputs, source_tokens.numpy().tolist(), strict=True)])
        self._start_seconds.add(time.perf_counter() - began)
        return Started(started)

    def join(self, started: Started) -> None:
        """Started inputs join the running decode of their beam width and take their
        first step at the next `step`."""
        for shared, (beams, rows) in started.groups.items():
            decode = self._decodes.setdefault(shared, _Decode())
            decode.joining = (beams if decode.joining is None
                              else self._concat(decode.joining, beams))
            decode.joining_rows += rows

    def leave(self, tickets: set[Hashable]) -> None:
        """Drops the inputs of `tickets` (cancelled, or past their deadline)."""
        for decode in self._decodes.values():
            decode.rows = [None if row and row.ticket in tickets else row
                           for row in decode.rows]
            keep = [i for i, row in enumerate(decode.joining_rows) if row.ticket not in tickets]
            if len(keep) < len(decode.joining_rows):
                decode.joining = self._select(decode.joining, tf.constant(keep, tf.int32))
                decode.joining_rows = [decode.joining_rows[i] for i in keep]

    def step(self, max_seconds: float = 0.0) -> tuple[list[Finished], list[Progress]]:
        """Advances every running input by at least one token; returns those that ended
        and, for exports that stream, every other input's settled output so far. Each
        decode takes the steps per call that `serving/call_length.py` chooses from what it
        measures, in about `max_seconds` at most (0: one step), fewer if all its inputs
        end first (exports before 2026-12-03 stop when one ends)."""
        finished: list[Finished] = []
        progress: list[Progress] = []
        for shared, decode in list(self._decodes.items()):
            keep = [i for i, row in enumerate(decode.rows) if row is not None]
            if not keep and not decode.joining_rows:
                del self._decodes[shared]
                continue
            started = time.perf_counter()
            joining, beams = decode.joining, decode.beams
            decode.rows = [decode.rows[i] for i in keep] + decode.joining_rows
            decode.joining, decode.joining_rows = None, []
            source = [row.source_tokens for row in decode.rows]
            if self.model:
                metrics.BATCH_SIZE.labels(self.model).observe(len(source))
                metrics.PADDING_RATIO.labels(self.model).observe(padding_ratio(source))
            length = self._call_lengths.get(shared)
            if length is None:  # a new beam width (setdefault would build one per call)
                length = self._call_lengths[shared] = CallLength()
            steps = length.next(max_seconds, len(source))
            if length.seconds_per_step is not None:
                self.call_ends = time.monotonic() + steps * length.seconds_per_step
            decode.beams, out = self._advance_regrouped(beams, keep, joining,
                                                        tf.constant(steps, tf.int32))
            ended = np.flatnonzero(out[ENDED].numpy())
            results = {k: v.numpy() for k, v in out.items()
                       if k not in (ENDED, STEPS, PARTIAL_TEXTS)} if len(ended) else {}
            for i, outputs in zip(ended, per_input(results, len(ended)), strict=True):
                row = decode.rows[i]
                length.ended(int(outputs[DECODE_STEPS]))
                if self.model:
                    metrics.DECODE_STEPS.labels(self.model).observe(int(outputs[DECODE_STEPS]))
                finished.append((row.ticket, row.index, outputs))
                decode.rows[i] = None  # dropped before the next step
            if PARTIAL_TEXTS in out:
                progress += [(row.ticket, row.index, text.decode("utf-8", "replace"))
                             for row, text in zip(decode.rows, out[PARTIAL_TEXTS].numpy(),
                                                  strict=True) if row is not None]
            length.observe(int(out[STEPS]), time.perf_counter() - started)
            self.call_ends = None
        return finished, progress

    def reset(self) -> None:
        """Forgets every running input (after a failed step)."""
        self._decodes.clear()
        self.call_ends = None

    def _advance_regrouped(self, beams: Beams | None, keep: list[int], joining: Beams | None,
                           steps: tf.Tensor) -> tuple[Beams, dict]:
        """Advances rows `keep` of `beams` and the `joining` rows, in that order."""
        if beams is None:
            return self._advance(joining, steps)
        keep_ids = tf.constant(keep, tf.int32)
        if joining is not None:
            return self._regroup_and_advance[not _aligned([beams, joining])](
                beams, keep_ids, joining, steps)
        if len(keep) < beams.log_probs.shape[0]:
            beams = self._select(beams, keep_ids)
        return self._advance(beams, steps)
