"""The exported translator: raw text in, n-best text out, all inside one graph.

tokenize -> encode -> beam search -> detokenize, as a `tf.Module` whose
`translate` function becomes the SavedModel's `translate` signature.
"""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import BeamSearch
from model.export import portable_kernels
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID, EOS_ID, SubwordTokenizer

TRANSLATE_SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="texts"),
    tf.TensorSpec([], tf.int32, name="beam_width"),
    tf.TensorSpec([], tf.int32, name="num_hypotheses"),
    tf.TensorSpec([], tf.float32, name="length_penalty"),
    tf.TensorSpec([], tf.int32, name="max_length"),
    tf.TensorSpec([], tf.float32, name="max_length_ratio"),
]

# An output may have at most ratio * source tokens + this many tokens.
MAX_LENGTH_OFFSET = 10


class Translator(tf.Module):
    """Wraps a trained `Seq2Seq` and its tokenizer for export and offline decoding.

    Args:
      max_source_tokens: source subwords kept (longer inputs are truncated).
    """

    def __init__(self, model: Seq2Seq, tokenizer: SubwordTokenizer, max_source_tokens: int):
        super().__init__(name="translator")
        self.model = model
        # Keras tracks some state (dropout seed generators) outside TF's object graph;
        # listing every variable here makes the SavedModel carry all of it.
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.max_source_tokens = max_source_tokens
        self.beam_search = BeamSearch(bos_id=BOS_ID, eos_id=EOS_ID)

    @tf.function(input_signature=TRANSLATE_SIGNATURE)
    def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length,
                  max_length_ratio):
        """texts [batch] -> texts, scores, log_probs, num_tokens, each [batch, n].

        Each output has at most `max_length` tokens and, if `max_length_ratio` > 0,
        at most ceil(ratio * source tokens) + 10, which stops runaway hypotheses.
        """
        source = self.tokenizer.tokenize(texts, self.max_source_tokens)
        relative = tf.cast(tf.math.ceil(
            max_length_ratio * tf.cast(source.row_lengths(), tf.float32)), tf.int32)
        limit = tf.where(max_length_ratio > 0,
                         tf.minimum(max_length, relative + MAX_LENGTH_OFFSET), max_length)
        state, step = self.model.start_decoding(source.to_tensor(), beam_width)
        result = self.beam_search(step, state, beam_width, num_hypotheses, length_penalty,
                                  limit)
        batch, n = tf.shape(result.lengths)[0], tf.shape(result.lengths)[1]
        flat = tf.RaggedTensor.from_tensor(
            tf.reshape(result.tokens, [batch * n, -1]), lengths=tf.reshape(result.lengths, [-1]))
        return {
            "texts": tf.reshape(self.tokenizer.detokenize(flat), [batch, n]),
            "scores": result.scores,
            "log_probs": result.log_probs,
            "num_tokens": result.lengths,
        }

    def save(self, path) -> None:
        """Writes the SavedModel with its `translate` signature (also `serving_default`)."""
        with portable_kernels(self.model):
            fn = self.translate.get_concrete_function(*TRANSLATE_SIGNATURE)
            tf.saved_model.save(self, str(path), signatures={"translate": fn,
                                                             "serving_default": fn})
