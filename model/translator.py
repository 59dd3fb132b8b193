"""The exported translator: raw text in, n-best text out, all inside one graph.

tokenize -> encode -> beam search -> detokenize, as a `tf.Module` whose
`translate` function becomes the SavedModel's `translate` signature. The same
search is also exported in two parts (begin, advance) for serving's step
scheduler, which lets inputs join and leave a running decode. Inputs and outputs
are the `TRANSLATE` contract's (`model/contract.py`).
"""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import BeamSearch
from model.contract import DECODE_STEPS, SOURCE_TOKENS, TRANSLATE
from model.seq2seq import Seq2Seq
from model.step_functions import DecoderExport, pad_to_bucket
from model.tokenizer import BOS_ID, EOS_ID, SubwordTokenizer

# An output may have at most ratio * source tokens + this many tokens.
MAX_LENGTH_OFFSET = 10


class Translator(DecoderExport):
    """Wraps a trained `Seq2Seq` and its tokenizer for export and offline decoding.

    Args:
      max_source_tokens: source subwords kept (longer inputs are truncated).
      xla: save the encoder and the search loop compiled with XLA (`DecoderExport`); the
        source is then padded to a multiple of `XLA_BUCKET` tokens, so its length varies
        in few steps.
      bf16_projection: decode with a bfloat16 copy of the output projection
        (`DecoderExport`).
    """

    def __init__(self, model: Seq2Seq, tokenizer: SubwordTokenizer, max_source_tokens: int,
                 xla: bool = False, bf16_projection: bool = False):
        super().__init__("translator", BeamSearch(bos_id=BOS_ID, eos_id=EOS_ID), model,
                         tokenizer, xla, bf16_projection)
        self.max_source_tokens = max_source_tokens
        self._start_decoding = self.compiled(model.start_decoding)

    @tf.function(input_signature=TRANSLATE.signature.inputs)
    def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length,
                  max_length_ratio):
        """texts [batch] -> texts, scores, log_probs, num_tokens, each [batch, n]; and
        source_tokens [batch] and decode_steps [] for the server's padding metrics.

        Each output has at most `max_length` tokens and, if `max_length_ratio` > 0,
        at most ceil(ratio * source tokens) + 10, which stops runaway hypotheses.
        """
        beams, source_tokens = self._begin(texts, beam_width, length_penalty, max_length,
                                           max_length_ratio)
        beams = self.search(beams)
        return {**self.finish(beams, num_hypotheses), SOURCE_TOKENS: source_tokens,
                DECODE_STEPS: tf.reduce_max(beams.step)}

    # The step-level driver (serving's step scheduler) runs the same search as
    # `translate` in two functions: begin once per joining input, then advance a few
    # steps at a time for every running input, which also finalizes those that end.

    @tf.function(input_signature=TRANSLATE.begin.inputs)
    def begin(self, texts, beam_width, length_penalty, max_length, max_length_ratio):
        """texts [batch] with per-input options [batch] -> (Beams, source_tokens [batch])."""
        return self._begin(texts, beam_width, length_penalty, max_length, max_length_ratio)

    def _begin(self, texts, beam_width, length_penalty, max_length, max_length_ratio):
        source = self.tokenizer.tokenize(texts, self.max_source_tokens)
        source_tokens = tf.cast(source.row_lengths(), tf.int32)
        relative = tf.cast(tf.math.ceil(max_length_ratio * tf.cast(source_tokens, tf.float32)),
                           tf.int32)
        limit = tf.where(max_length_ratio > 0,
                         tf.minimum(max_length, relative + MAX_LENGTH_OFFSET), max_length)
        source = source.to_tensor()  # [batch, src_time]
        if self.xla:  # padding is masked: the encoder's and the attention's mask
            source = pad_to_bucket(source, axis=1)
        state, context = self._start_decoding(source)
        limit = tf.broadcast_to(limit, tf.shape(source_tokens))
        return self.beam_search.initialize(state, context, beam_width, length_penalty,
                                           limit), source_tokens

    def save(self, path) -> None:
        """Writes the SavedModel: the `translate` signature (also `serving_default`) for
        any TF Serving client, and `begin` / `advance` for recur's step scheduler."""
        self.save_functions(path, TRANSLATE, self.translate, self.begin)
