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
both happen in one compiled call just before the next step. Not thread-safe: the
batcher's worker thread is its only caller.
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
from serving.runner import padding_ratio
from serving.task import Outputs, Row

MAX_STEPS_PER_CALL = 64

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
        self._regroup = tf.function(_regroup).get_concrete_function(spec, rows, spec)
        self._decodes: dict[tuple, _Decode] = {}
        self._seconds_per_step: dict[tuple, float] = {}  # per decode, moving average

    @contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Records no metrics meanwhile (warm-up is not traffic)."""
        label, self.model = self.model, ""
        try:
            yield
        finally:
            self.model = label

    @property
    def rows(self) -> int:
        """Inputs decoding or about to."""
        return sum(d.live for d in self._decodes.values())

    def join(self, entries: Sequence[tuple[Hashable, Sequence[Row]]]) -> None:
        """Starts new inputs (each row holding every input of `begin`); they join the
        running decode of their beam width and take their first step at the next `step`."""
        groups: dict[tuple, list[tuple[Hashable, int, Row]]] = {}
        for ticket, rows in entries:
            for index, row in enumerate(rows):
                shared = tuple(row[name] for name in self._shared)
                groups.setdefault(shared, []).append((ticket, index, row))
        for shared, inputs in groups.items():
            beams, source_tokens = self._begin(
                **self._contract.arguments([row for *_, row in inputs]))
            decode = self._decodes.setdefault(shared, _Decode())
            decode.joining = beams if decode.joining is None else concat_rows(
                [decode.joining, beams])
            decode.joining_rows += [
                _Row(ticket, index, n) for (ticket, index, _), n
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

    def step(self, max_seconds: float = 0.0) -> tuple[list[Finished], list[Progress]]:
        """Advances every running input by at least one token; returns those that ended
        and, for exports that stream, every other input's settled output so far. Each
        decode takes as many steps in one call as fit in `max_seconds` at its measured
        pace (fewer if an input ends first): the per-call overhead matters at small
        batches, where a step takes about a millisecond."""
        finished: list[Finished] = []
        progress: list[Progress] = []
        for shared, decode in list(self._decodes.items()):
            if not self._regrouped(shared, decode):
                continue
            source = [row.source_tokens for row in decode.rows]
            if self.model:
                metrics.BATCH_SIZE.labels(self.model).observe(len(source))
                metrics.PADDING_RATIO.labels(self.model).observe(padding_ratio(source))
            pace = self._seconds_per_step.get(shared)
            steps = max(1, min(MAX_STEPS_PER_CALL, int(max_seconds / pace))) if pace else 1
            started = time.perf_counter()
            decode.beams, out = self._advance(decode.beams, tf.constant(steps, tf.int32))
            seconds = (time.perf_counter() - started) / max(int(out[STEPS]), 1)
            self._seconds_per_step[shared] = (seconds if pace is None
                                              else 0.7 * pace + 0.3 * seconds)
            ended = np.flatnonzero(out[ENDED].numpy())
            results = {k: v.numpy() for k, v in out.items()
                       if k not in (ENDED, STEPS, PARTIAL_TEXTS)} if len(ended) else {}
            for i, outputs in zip(ended, per_input(results, len(ended)), strict=True):
                row = decode.rows[i]
                if self.model:
                    metrics.DECODE_STEPS.labels(self.model).observe(int(outputs[DECODE_STEPS]))
                finished.append((row.ticket, row.index, outputs))
                decode.rows[i] = None  # dropped before the next step
            if PARTIAL_TEXTS in out:
                progress += [(row.ticket, row.index, text.decode("utf-8", "replace"))
                             for row, text in zip(decode.rows, out[PARTIAL_TEXTS].numpy(),
                                                  strict=True) if row is not None]
        return finished, progress

    def reset(self) -> None:
        """Forgets every running input (after a failed step)."""
        self._decodes.clear()

    def _regrouped(self, shared: tuple, decode: _Decode) -> bool:
        """Drops ended and departed rows and adds joining ones; False if none is left."""
        keep = [i for i, row in enumerate(decode.rows) if row is not None]
        if not keep and not decode.joining_rows:
            del self._decodes[shared]
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
