"""Captioning on the serving side: `Caption` (an encoded image -> its n-best captions).

The image's headers are checked (format, bytes, pixels: `serving/images.py`) before it
joins a batch; one that does not decode fails its model call, whose requests the batcher
then runs apart, so a bad image costs its own request only.
"""

from __future__ import annotations

import tensorflow as tf
from google.protobuf.message import Message

from model.contract import CAPTION, IMAGE_SIZE, IMAGES, NUM_HYPOTHESES
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.decoding import decode_options, nbest, tokens_in
from serving.errors import RequestError, invalid
from serving.images import check_image, undecodable
from serving.task import Inputs, Outputs, Task


class CaptionTask(Task):
    name = CAPTION.task
    contract = CAPTION
    methods = ("Caption",)

    def parse(self, method: str, request: recur_pb2.CaptionRequest, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        check_image(request.image, limits)
        if request.options.HasField("max_length_ratio"):
            raise invalid("options.max_length_ratio is for translation only: leave it unset")
        options = decode_options(request.options, metadata, limits)
        return Inputs([{IMAGES.name: request.image}], options)

    def refusal(self, method: str, request: recur_pb2.CaptionRequest, error: Exception
                ) -> RequestError | None:
        return undecodable(request.image, error)

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        (outputs,) = results
        answer = nbest(outputs, inputs.options[NUM_HYPOTHESES.name])
        return (recur_pb2.CaptionResponse(result=answer, model_version=version),
                tokens_in([answer]))

    def labels(self, metadata: dict) -> dict[str, str]:
        return {**super().labels(metadata),
                **{key: str(metadata[key]) for key in (IMAGE_SIZE, "created")
                   if key in metadata}}

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        image = tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(255, tf.uint8))).numpy()
        request = recur_pb2.CaptionRequest(image=image, options=recur_pb2.DecodeOptions(
            beam_width=2, max_length=8))
        return self.parse("Caption", request, metadata, limits)


TASK = CaptionTask()
