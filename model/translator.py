"""The exported translator: raw text in, n-best text out, all inside one graph.

tokenize -> encode -> beam search -> detokenize, as a `tf.Module` whose
`translate` function becomes the SavedModel's `translate` signature.
"""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import BeamSearch
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID, EOS_ID, SubwordTokenizer

TRANSLATE_SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="texts"),
    tf.TensorSpec([], tf.int32, name="beam_width"),
    tf.TensorSpec([], tf.int32, name="num_hypotheses"),
    tf.TensorSpec([], tf.float32, name="length_penalty"),
    tf.TensorSpec([], tf.int32, name="max_length"),
]


class Translator(tf.Module):
    """Wraps a trained `Seq2Seq` and its tokenizer for export and offline decoding.

    Args:
      max_source_tokens: source subwords kept (longer inputs are truncated).
      max_length_ratio, max_length_offset: an output may have at most
        ratio * source tokens + offset tokens, and never more than the request's
        `max_length`; this stops runaway hypotheses on short inputs.
    """

    def __init__(self, model: Seq2Seq, tokenizer: SubwordTokenizer, max_source_tokens: int,
                 max_length_ratio: float = 2.0, max_length_offset: int = 10):
        super().__init__(name="translator")
        self.model = model
        # Keras tracks some state (dropout seed generators) outside TF's object graph;
        # listing every variable here makes the SavedModel carry all of it.
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        self.max_source_tokens = max_source_tokens
        self.max_length_ratio = max_length_ratio
        self.max_length_offset = max_length_offset
        self.beam_search = BeamSearch(bos_id=BOS_ID, eos_id=EOS_ID)

    @tf.function(input_signature=TRANSLATE_SIGNATURE)
    def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length):
        """texts [batch] -> texts, scores, log_probs, num_tokens, each [batch, n]."""
        source = self.tokenizer.tokenize(texts, self.max_source_tokens)
        relative = tf.cast(tf.math.ceil(
            self.max_length_ratio * tf.cast(source.row_lengths(), tf.float32)), tf.int32)
        limit = tf.minimum(max_length, relative + self.max_length_offset)
        result = self.beam_search(self.model.step, self.model.encode(source.to_tensor()),
                                  beam_width, num_hypotheses, length_penalty, limit)
        batch, n = tf.shape(result.lengths)[0], tf.shape(result.lengths)[1]
        flat = tf.RaggedTensor.from_tensor(
            tf.reshape(result.tokens, [batch * n, -1]), lengths=tf.reshape(result.lengths, [-1]))
        return {
            "texts": tf.reshape(self.tokenizer.detokenize(flat), [batch, n]),
            "scores": result.scores,
            "log_probs": result.log_probs,
            "num_tokens": result.lengths,
        }
