"""The reverse task's serving side: Translate (n-best reversals by beam search), and
Generate / GenerateStream (the prompt reversed, sampled or by beam search, streamed)."""

from __future__ import annotations

from google.protobuf.message import Message

from model.contract import BY_SCORE
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.decoding import (
    check_size,
    check_texts,
    decode_options,
    generated,
    nbest,
    sampling_options,
    tokens_in,
)
from serving.errors import invalid
from serving.task import Inputs, Outputs, Stream, Task
from serving.tasks.charlm import TextStream
from tests.reverse.contract import REVERSE


class ReverseTask(Task):
    name = REVERSE.task
    contract = REVERSE
    methods = ("Translate", "Generate", "GenerateStream")

    def parse(self, method: str, request: Message, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        if method == "Translate":
            texts = check_texts(request.texts, limits)
            return Inputs([{"texts": t} for t in texts],
                          {**decode_options(request.options, metadata, limits), **BY_SCORE})
        if not request.prompt:
            raise invalid("prompt is empty: send the text to reverse")
        check_size(request.prompt, limits, "prompt")
        max_chars = request.max_chars if request.HasField("max_chars") else 12
        if not 1 <= max_chars <= limits.max_output_length:
            raise invalid(f"max_chars must be in 1..{limits.max_output_length}, got {max_chars}")
        options = {"beam_width": 1, "num_hypotheses": 1, "length_penalty": 0.0,
                   "max_length": max_chars}
        if request.HasField("beam_width"):
            options.update(decode_options(recur_pb2.DecodeOptions(
                beam_width=request.beam_width, max_length=max_chars), metadata, limits))
            options.update(num_hypotheses=1, **BY_SCORE)
        else:
            options.update(sampling_options(request, limits))
        return Inputs([{"texts": request.prompt}], options)

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        if method == "Translate":
            answers = [nbest(outputs, inputs.options["num_hypotheses"]) for outputs in results]
            return (recur_pb2.TranslateResponse(results=answers, model_version=version),
                    tokens_in(answers))
        return generated(results, version)

    def stream(self, method: str, request: Message, inputs: Inputs, version: int) -> Stream:
        return TextStream(version)

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        return self.parse("GenerateStream", recur_pb2.GenerateRequest(prompt="abc", seed=1),
                          metadata, limits)


TASK = ReverseTask()
