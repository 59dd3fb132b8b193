"""Step-level (continuous) decoding: inputs join a running beam search at the next
step and leave it as soon as they end, so a short input never waits for a long one.

It drives an export's `begin` / `advance` / `finish` functions, which are the same
`BeamSearch.initialize` / `step` / `finalize` that the `translate` signature loops
over in-graph: one beam search, two drivers. Hypothesis tensors of different beam
widths cannot share a batch, so there is one running decode per beam width; every
other option (length penalty, length limits, hypotheses returned) is per input.
An RNN decoder's state is a fixed-size tensor per hypothesis, so joining is a
concatenation and leaving a gather. Not thread-safe: the batcher's worker thread
is its only caller.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model.beam_search import Beams, concat_rows, finished_rows, select_rows
from serving import metrics
from serving.runners import DecodeKey, Hypothesis, hypotheses, padding_ratio

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
    """The running search of one beam width: `beams` row i is input `rows[i]`."""

    beams: Beams
    rows: list[_Row]


class StepDecoder:
    """Continuous decoding of one loaded export (see the module docstring).

    Args:
      model: name used for metric labels.
      saved_model: the loaded SavedModel, with begin / advance / finish functions.
    """

    def __init__(self, model: str, saved_model):
        self.model = model
        self._begin = saved_model.begin
        self._advance = saved_model.advance
        self._finish = saved_model.finish
        self._decodes: dict[int, _Decode] = {}

    @staticmethod
    def supports(saved_model) -> bool:
        """Exports written before step decoding existed lack the three functions."""
        return all(hasattr(saved_model, name) for name in ("begin", "advance", "finish"))

    @property
    def rows(self) -> int:
        """Inputs decoding now."""
        return sum(len(d.rows) for d in self._decodes.values())

    def join(self, entries: Sequence[tuple[Hashable, DecodeKey, list[str]]]) -> None:
        """Encodes new inputs and adds them to the running decode of their beam width;
        they take their first step at the next `step`."""
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
            rows = [_Row(ticket, index, key.num_hypotheses, n) for (ticket, key, index, _), n
                    in zip(inputs, source_tokens.numpy().tolist(), strict=True)]
            beams = Beams(*beams)
            running = self._decodes.get(width)
            if running is None:
                self._decodes[width] = _Decode(beams, rows)
            else:
                running.beams = concat_rows([running.beams, beams])
                running.rows += rows

    def leave(self, tickets: set[Hashable]) -> None:
        """Drops the inputs of `tickets` (cancelled, or past their deadline) at once."""
        for width, running in list(self._decodes.items()):
            keep = [i for i, row in enumerate(running.rows) if row.ticket not in tickets]
            if len(keep) < len(running.rows):
                self._keep(width, running, keep)

    def step(self) -> list[Finished]:
        """Advances every running input by one token; returns the inputs that ended."""
        finished: list[Finished] = []
        for width, running in list(self._decodes.items()):
            source = [row.source_tokens for row in running.rows]
            metrics.BATCH_SIZE.labels(self.model).observe(len(source))
            metrics.PADDING_RATIO.labels(self.model).observe(padding_ratio(source))
            running.beams = Beams(*self._advance(running.beams))
            done = finished_rows(running.beams).numpy()
            if not done.any():
                continue
            ended = np.flatnonzero(done)
            beams = select_rows(running.beams, tf.constant(ended, tf.int32))
            rows = [running.rows[i] for i in ended]
            n = max(row.num_hypotheses for row in rows)
            results = hypotheses(self._finish(beams, tf.constant(n, tf.int32)))
            for row, steps, nbest in zip(rows, beams.step.numpy(), results, strict=True):
                metrics.DECODE_STEPS.labels(self.model).observe(int(steps))
                finished.append((row.ticket, row.index, nbest[:row.num_hypotheses]))
            self._keep(width, running, np.flatnonzero(~done).tolist())
        return finished

    def reset(self) -> None:
        """Forgets every running input (after a failed step)."""
        self._decodes.clear()

    def _keep(self, width: int, running: _Decode, keep: list[int]) -> None:
        if not keep:
            del self._decodes[width]
            return
        running.beams = select_rows(running.beams, tf.constant(keep, tf.int32))
        running.rows = [running.rows[i] for i in keep]

