"""Step-level (continuous) decoding: inputs join a running beam search at the next
step and leave it as soon as they end, so a short input never waits for a long one.

It drives an export's `begin` and `advance` functions, which are the same
`BeamSearch.initialize` / `step` / `finalize` that the `translate` signature loops
over in-graph (`advance` finalizes the inputs that end): one beam search, two
drivers. Hypothesis tensors of different beam widths cannot share a batch, so
there is one running decode per beam width; every other option (length penalty,
length limits, hypotheses returned) is per input. An RNN decoder's state is a
fixed-size tensor per hypothesis, so joining is a concatenation and leaving a
gather; both happen in one compiled call just before the next step. Not
thread-safe: the batcher's worker thread is its only caller.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from model.beam_search import Beams, concat_rows, select_rows
from serving import metrics
from serving.runners import DecodeKey, Hypothesis, hypotheses, padding_ratio

MAX_STEPS_PER_CALL = 64
STEP_FUNCTIONS = ("begin", "advance")

Finished = tuple[Hashable, int, list[Hypothesis]]
"""(ticket, index of the input in its ticket's list, its n-best list)."""


@dataclass(frozen=True)
class _Row:
    ticket: Hashable  # the caller's handle for the request the input belongs to
    index: int
    num_hypotheses: int
    source_tokens: int


@dataclass
class _Decode:
    """The running search of one beam width: `beams` row i is input `rows[i]`, or a
    row to drop (None: ended or left) at the next step; `joining` waits to be added."""

    beams: Beams | None = None
    rows: list[_Row | None] = field(default_factory=list)
    joining: Beams | None = None
    joining_rows: list[_Row] = field(default_factory=list)

    @property
    def live(self) -> int:
        return sum(row is not None for row in self.rows) + len(self.joining_rows)


def _traced_once(function):
    """The one concrete function of a restored tf.function. Calling it directly matters:
    the restored function would trace a new wrapper for every new input shape (every
    new number of inputs, source length...), slowly and without bound."""
    (concrete,) = function.concrete_functions
    return concrete


def _regroup(beams: Beams, keep: tf.Tensor, joining: Beams) -> Beams:
    return concat_rows([select_rows(beams, keep), joining])


class StepDecoder:
    """Continuous decoding of one loaded export (see the module docstring).

    Args:
      model: name used for metric labels ("" records no metrics).
      saved_model: the loaded SavedModel, with begin and advance functions.
    """

    def __init__(self, model: str, saved_model):
        self.model = model
        self._begin, self._advance = (
            _traced_once(getattr(saved_model, name)) for name in STEP_FUNCTIONS)
        # Row bookkeeping as single compiled calls (dozens of eager ops otherwise),
        # for any number of inputs and any lengths.
        spec = Beams(*self._advance.structured_input_signature[0][0])
        rows = tf.TensorSpec([None], tf.int32)
        self._select = tf.function(select_rows).get_concrete_function(spec, rows)
        self._regroup = tf.function(_regroup).get_concrete_function(spec, rows, spec)
        self._decodes: dict[int, _Decode] = {}
        self._seconds_per_step: dict[int, float] = {}  # per beam width, moving average

    @staticmethod
    def supports(saved_model) -> bool:
        """Exports written before step decoding existed lack its functions."""
        return all(hasattr(saved_model, name) for name in STEP_FUNCTIONS)

    @property
    def rows(self) -> int:
        """Inputs decoding or about to."""
        return sum(d.live for d in self._decodes.values())

    def join(self, entries: Sequence[tuple[Hashable, DecodeKey, list[str]]]) -> None:
        """Encodes new inputs; they join the running decode of their beam width and take
        their first step at the next `step`."""
        by_width: dict[int, list[tuple[Hashable, DecodeKey, int, str]]] = {}
        for ticket, key, texts in entries:
            by_width.setdefault(key.beam_width, []).extend(
                (ticket, key, index, text) for index, text in enumerate(texts))
        for width, inputs in by_width.items():
            keys = [key for _, key, _, _ in inputs]
            beams, source_tokens = self._begin(
                texts=tf.constant([text for *_, text in inputs], tf.string),
                beam_width=tf.constant(width, tf.int32),
                length_penalty=tf.constant([k.length_penalty for k in keys], tf.float32),
                max_length=tf.constant([k.max_length for k in keys], tf.int32),
                max_length_ratio=tf.constant([k.max_length_ratio for k in keys], tf.float32))
            decode = self._decodes.setdefault(width, _Decode())
            beams = Beams(*beams)
            decode.joining = beams if decode.joining is None else concat_rows(
                [decode.joining, beams])
            decode.joining_rows += [
                _Row(ticket, index, key.num_hypotheses, n) for (ticket, key, index, _), n
                in zip(inputs, source_tokens.numpy().tolist(), strict=True)]

    def leave(self, tickets: set[Hashable]) -> None:
        """Drops the inputs of `tickets` (cancelled, or past their deadline)."""
        for decode in self._decodes.values():
            decode.rows = [None if row and row.ticket in tickets else row
                           for row in decode.rows]
            keep = [i for i, row in enumerate(decode.joining_rows) if row.ticket not in tickets]
            if len(keep) < len(decode.joining_rows):
                decode.joining = self._select(decode.joining, tf.constant(keep, tf.int32))
                decode.joining_rows = [decode.joining_rows[i] for i in keep]

    def step(self, max_seconds: float = 0.0) -> list[Finished]:
        """Advances every running input by at least one token and returns those that
        ended. Each decode takes as many steps in one call as fit in `max_seconds` at its
        measured pace (fewer if an input ends first): the per-call overhead matters at
        small batches, where a step takes about a millisecond."""
        finished: list[Finished] = []
        for width, decode in list(self._decodes.items()):
            if not self._regrouped(width, decode):
                continue
            source = [row.source_tokens for row in decode.rows]
            if self.model:
                metrics.BATCH_SIZE.labels(self.model).observe(len(source))
                metrics.PADDING_RATIO.labels(self.model).observe(padding_ratio(source))
            pace = self._seconds_per_step.get(width)
            steps = max(1, min(MAX_STEPS_PER_CALL, int(max_seconds / pace))) if pace else 1
            started = time.perf_counter()
            beams, out = self._advance(decode.beams, tf.constant(steps, tf.int32))
            decode.beams = Beams(*beams)
            seconds = (time.perf_counter() - started) / max(int(out["steps"]), 1)
            self._seconds_per_step[width] = seconds if pace is None else 0.7 * pace + 0.3 * seconds
            ended = np.flatnonzero(out["ended"].numpy())
            for i, nbest, steps_decoded in zip(ended, hypotheses(out),
                                               out["decode_steps"].numpy(), strict=True):
                row = decode.rows[i]
                if self.model:
                    metrics.DECODE_STEPS.labels(self.model).observe(int(steps_decoded))
                finished.append((row.ticket, row.index, nbest[:row.num_hypotheses]))
                decode.rows[i] = None  # dropped before the next step
        return finished

    def reset(self) -> None:
        """Forgets every running input (after a failed step)."""
        self._decodes.clear()

    def _regrouped(self, width: int, decode: _Decode) -> bool:
        """Drops ended and departed rows and adds joining ones; False if none is left."""
        keep = [i for i, row in enumerate(decode.rows) if row is not None]
        if not keep and not decode.joining_rows:
            del self._decodes[width]
            return False
        keep_ids = tf.constant(keep, tf.int32)
        if decode.beams is None:
            decode.beams = decode.joining
        elif decode.joining is not None:
            decode.beams = self._regroup(decode.beams, keep_ids, decode.joining)
        elif len(keep) < len(decode.rows):
            decode.beams = self._select(decode.beams, keep_ids)
        decode.rows = [decode.rows[i] for i in keep] + decode.joining_rows
        decode.joining, decode.joining_rows = None, []
        return True
