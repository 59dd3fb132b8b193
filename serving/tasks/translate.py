"""Translation on the serving side: `Translate` (texts -> n-best per text)."""

from __future__ import annotations

import math

from google.protobuf.message import Message

from model.contract import MAX_LENGTH_RATIO, NUM_HYPOTHESES, TEXTS, TRANSLATE
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.decoding import check_texts, decode_options, nbest, tokens_in
from serving.errors import invalid
from serving.task import Inputs, Outputs, Task

MAX_RATIO = 10.0
DEFAULT_RATIO = 2.0  # exports record their own (recur.json "max_length_ratio")


class TranslateTask(Task):
    name = TRANSLATE.task
    contract = TRANSLATE
    methods = ("Translate",)

    def parse(self, method: str, request: recur_pb2.TranslateRequest, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        texts = check_texts(request.texts, limits)
        options = decode_options(request.options, metadata, limits)
        ratio = (request.options.max_length_ratio
                 if request.options.HasField("max_length_ratio")
                 else float(metadata.get(MAX_LENGTH_RATIO.name, DEFAULT_RATIO)))
        if not (math.isfinite(ratio) and 0.0 <= ratio <= MAX_RATIO):
            raise invalid(f"options.max_length_ratio must be in 0..{MAX_RATIO:g}, got {ratio}")
        options[MAX_LENGTH_RATIO.name] = round(float(ratio), 4)
        return Inputs([{TEXTS.name: text} for text in texts], options)

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        count = inputs.options[NUM_HYPOTHESES.name]
        answers = [nbest(outputs, count) for outputs in results]
        return (recur_pb2.TranslateResponse(results=answers, model_version=version),
                tokens_in(answers))

    def labels(self, metadata: dict) -> dict[str, str]:
        return {key: str(metadata[key]) for key in ("source_language", "target_language",
                                                    "created") if key in metadata}

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        request = recur_pb2.TranslateRequest(texts=["warm up"], options=recur_pb2.DecodeOptions(
            beam_width=2, max_length=8))
        return self.parse("Translate", request, metadata, limits)


TASK = TranslateTask()
