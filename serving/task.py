"""A model kind on the serving side: the one seam between the engine and a task.

The engine (registry, batcher, step decoder, servicer) knows exports only through
their task's `Task`: which RPCs it answers, how a request becomes inputs for the
export's functions (validated: INVALID_ARGUMENT naming the field), how the outputs
become the response, what ListModels shows and what a warm-up sends. A task module
(`serving/tasks/<task>.py`) defines one `Task` subclass instance, `TASK`.

Data between the two: a request becomes `Inputs`: per input a row of values for the
export's per-input tensors, plus the options the request's inputs share. Requests
with equal options may share a request-level batch; under step scheduling every
option is per input (the export's `begin` takes it per row), except those `begin`
takes as scalars (the beam width), which a running decode shares.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from model.contract import Meta, TaskContract
from serving.config import LimitsConfig
from serving.errors import RequestError

Row = dict[str, Any]
"""One input: export input name -> value (a str, bytes or number)."""


def row_length(row: Row) -> int:
    """An input's size for batching similar ones together: characters (or bytes) of its
    text values."""
    return sum(len(value) for value in row.values() if isinstance(value, str | bytes))


Outputs = dict[str, Any]
"""One input's outputs: export output key -> numpy value (its slice of the batch)."""


@dataclass(frozen=True)
class Inputs:
    rows: list[Row]
    options: dict[str, Hashable]

    @property
    def key(self) -> tuple:
        """Requests with the same key may share a request-level batch."""
        return tuple(sorted(self.options.items()))

    def merged(self) -> list[Row]:
        """Each row with every option: what the export's functions are called with."""
        return [{**self.options, **row} for row in self.rows]


class Stream:
    """One server-streaming call: turns what the decode reports into messages."""

    def update(self, index: int, partial: str) -> list[Message]:
        """Input `index`'s settled output so far -> messages to send now."""
        raise NotImplementedError

    def finish(self, results: list[Outputs]) -> tuple[list[Message], int]:
        """The final outputs -> (the last messages, output tokens they carry)."""
        raise NotImplementedError


class Task:
    """Subclasses set `name` (the `task` of recur.json), `contract` and `methods`, and
    implement the methods below that their RPCs need."""

    name: str
    contract: TaskContract
    methods: tuple[str, ...] = ()  # RPC names of recur.v1.Recur this task answers

    def parse(self, method: str, request: Message, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        """Validates `request` (raise `serving.errors.invalid(...)`, naming the field). It
        runs on the event loop: checks that take no more than microseconds."""
        raise NotImplementedError

    def refusal(self, method: str, request: Message, error: Exception) -> RequestError | None:
        """The client error for a request whose inputs failed the model alone with `error`
        (the batcher ran it apart from its batch), if its input is to blame; None: the
        server's fault (INTERNAL)."""
        return None

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        """The unary response and the number of output tokens it carries (a metric)."""
        raise NotImplementedError

    def stream(self, method: str, request: Message, inputs: Inputs, version: int) -> Stream:
        raise NotImplementedError

    def labels(self, metadata: dict) -> dict[str, str]:
        """What ListModels shows of an export: recur.json's `labels` by default."""
        return {str(k): str(v) for k, v in metadata.get(Meta.LABELS, {}).items()}

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        """A small valid request's inputs, run once through each path before serving."""
        raise NotImplementedError
