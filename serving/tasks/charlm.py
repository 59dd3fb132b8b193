"""Character generation on the serving side: `Generate` (a prompt -> its continuation)
and `GenerateStream` (the same, sent as the decode settles it).

A request is one input: its prompt (may be empty: the text's beginning) and its options,
all per input under step scheduling, so that every stream shares one running decode.
Without `beam_width` the continuation is sampled (temperature, top_k, top_p, seed; an
unset seed is drawn fresh); with it, beam search chooses it and the sampling fields,
still checked, are ignored.
"""

from __future__ import annotations

from google.protobuf.message import Message

from model.contract import BEAM_WIDTH, BY_SCORE, GENERATE, MAX_LENGTH, NUM_HYPOTHESES, TEXTS
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.decoding import check_size, generated, sampling_options
from serving.errors import invalid
from serving.task import Inputs, Outputs, Stream, Task

DEFAULT_MAX_CHARS = 200  # exports record their own (recur.json "max_length")


class TextStream(Stream):
    """Sends each newly settled piece of the continuation, then the rest with `done`."""

    def __init__(self, version: int):
        self.version = version
        self.sent = ""

    def _chunk(self, text: str, done: bool = False) -> recur_pb2.GenerateChunk:
        new, self.sent = text[len(self.sent):], text
        return recur_pb2.GenerateChunk(text=new, done=done, model_version=self.version)

    def update(self, index: int, partial: str) -> list[Message]:
        return [self._chunk(partial)] if len(partial) > len(self.sent) else []

    def finish(self, results: list[Outputs]) -> tuple[list[Message], int]:
        (outputs,) = results
        return ([self._chunk(outputs["texts"][0].decode("utf-8"), done=True)],
                int(outputs["num_tokens"][0]))


class CharLMTask(Task):
    name = GENERATE.task
    contract = GENERATE
    methods = ("Generate", "GenerateStream")

    def parse(self, method: str, request: recur_pb2.GenerateRequest, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        check_size(request.prompt, limits, "prompt")
        max_chars = (request.max_chars if request.HasField("max_chars")
                     else min(int(metadata.get(MAX_LENGTH.name, DEFAULT_MAX_CHARS)),
                              limits.max_chars))
        if not 1 <= max_chars <= limits.max_chars:
            raise invalid(f"max_chars must be in 1..{limits.max_chars}, got {max_chars}")
        sampled = sampling_options(request, limits)  # checked even when beam_width is set
        options: dict = {MAX_LENGTH.name: max_chars, NUM_HYPOTHESES.name: 1}
        if request.HasField("beam_width"):
            if not 1 <= request.beam_width <= limits.max_beam_width:
                raise invalid(f"beam_width must be in 1..{limits.max_beam_width}, got "
                              f"{request.beam_width}")
            options |= {BEAM_WIDTH.name: request.beam_width, **BY_SCORE}
        else:
            options |= {BEAM_WIDTH.name: 1, **sampled}
        return Inputs([{TEXTS.name: request.prompt}], options)

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        return generated(results, version)

    def stream(self, method: str, request: Message, inputs: Inputs, version: int) -> Stream:
        return TextStream(version)

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        return self.parse("GenerateStream", recur_pb2.GenerateRequest(
            prompt="a", max_chars=4, seed=1), metadata, limits)


TASK = CharLMTask()
