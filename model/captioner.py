"""The exported captioner: encoded images in, n-best captions out, all inside one graph.

decode the image -> the CNN -> the one beam search over the recurrent decoder ->
detokenize, as a `tf.Module` whose `caption` function becomes the `caption` signature,
with `begin` / `advance` for serving's step scheduler, so captions join a running decode
as translations do. Inputs and outputs are the `CAPTION` contract's
(`model/contract.py`).
"""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import BeamSearch
from model.contract import CAPTION, DECODE_STEPS, SOURCE_TOKENS
from model.image_to_text import ImageToText
from model.images import decode_images
from model.step_functions import DecoderExport
from model.tokenizer import BOS_ID, EOS_ID, SubwordTokenizer


class Captioner(DecoderExport):
    """Wraps a trained `ImageToText` and its tokenizer for export and offline decoding."""

    def __init__(self, model: ImageToText, tokenizer: SubwordTokenizer):
        super().__init__("captioner", BeamSearch(bos_id=BOS_ID, eos_id=EOS_ID), model,
                         tokenizer)

    @tf.function(input_signature=CAPTION.signature.inputs)
    def caption(self, images, beam_width, num_hypotheses, length_penalty, max_length):
        """images [batch] encoded -> texts, scores, log_probs, num_tokens, each [batch, n];
        source_tokens [batch] and decode_steps [] for the server's metrics."""
        batch = tf.shape(images)[0]
        beams, positions = self._begin(images, beam_width,
                                       tf.broadcast_to(length_penalty, [batch]),
                                       tf.broadcast_to(max_length, [batch]))
        beams = self.search(beams)
        return {**self.finish(beams, num_hypotheses), SOURCE_TOKENS: positions,
                DECODE_STEPS: tf.reduce_max(beams.step)}

    @tf.function(input_signature=CAPTION.begin.inputs)
    def begin(self, images, beam_width, length_penalty, max_length):
        """images [batch] with per-input options [batch] -> (Beams, positions [batch])."""
        return self._begin(images, beam_width, length_penalty, max_length)

    def _begin(self, images, beam_width, length_penalty, max_length):
        pixels = decode_images(images, self.model.image_size)
        state, context = self.model.start_decoding(pixels)
        positions = tf.reduce_sum(tf.cast(context.mask, tf.int32), axis=1)
        return self.beam_search.initialize(state, context, beam_width, length_penalty,
                                           max_length), positions

    def save(self, path) -> None:
        """Writes the SavedModel: the `caption` signature (also `serving_default`) for
        any TF Serving client, and `begin` / `advance` for recur's step scheduler."""
        self.save_functions(path, CAPTION, self.caption, self.begin)
