"""The exported translator: raw text in, n-best text out, all inside one graph.

tokenize -> encode -> beam search -> detokenize, as a `tf.Module` whose
`translate` function becomes the SavedModel's `translate` signature. The same
search is also exported in two parts (begin, advance) for serving's step
scheduler, which lets inputs join and leave a running decode.
"""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import Beams, BeamSearch, finished_rows, hypotheses_only, select_rows
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

BEGIN_SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="texts"),
    tf.TensorSpec([], tf.int32, name="beam_width"),
    tf.TensorSpec([None], tf.float32, name="length_penalty"),
    tf.TensorSpec([None], tf.int32, name="max_length"),
    tf.TensorSpec([None], tf.float32, name="max_length_ratio"),
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
        # Traced for any batch, time and source length in `save`, where the specs of
        # the model's state are known.
        self.advance = tf.function(self._advance)

    @tf.function(input_signature=TRANSLATE_SIGNATURE)
    def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length,
                  max_length_ratio):
        """texts [batch] -> texts, scores, log_probs, num_tokens, each [batch, n]; and
        source_tokens [batch] and decode_steps [] for the server's padding metrics.

        Each output has at most `max_length` tokens and, if `max_length_ratio` > 0,
        at most ceil(ratio * source tokens) + 10, which stops runaway hypotheses.
        """
        beams, source_tokens = self._begin(texts, beam_width, length_penalty, max_length,
                                           max_length_ratio)
        beams = self.beam_search.run(self.model.decode_step, beams)
        return {**self._finish(beams, num_hypotheses), "source_tokens": source_tokens,
                "decode_steps": tf.reduce_max(beams.step)}

    # The step-level driver (serving's step scheduler) runs the same search as
    # `translate` in two functions: begin once per joining input, then advance a few
    # steps at a time for every running input, which also finalizes those that end.

    @tf.function(input_signature=BEGIN_SIGNATURE)
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
        state, context = self.model.start_decoding(source.to_tensor())
        limit = tf.broadcast_to(limit, tf.shape(source_tokens))
        return self.beam_search.initialize(state, context, beam_width, length_penalty,
                                           limit), source_tokens

    def _advance(self, beams: Beams, max_steps) -> tuple[Beams, dict[str, tf.Tensor]]:
        """Steps every input in `beams` until one ends, at most `max_steps` times.

        Returns the beams and: `ended` [batch] bool, the inputs that ended (all of them:
        the driver drops ended inputs before the next call); `steps` [], steps taken;
        for the ended inputs, their n-best lists with every hypothesis (the driver keeps
        as many as each asked for): texts, scores, log_probs, num_tokens [ended, beam]
        and decode_steps [ended].
        """
        after = self.beam_search.run(self.model.decode_step, beams, max_steps,
                                     until_any_ends=True)
        ended = finished_rows(after)
        done = select_rows(hypotheses_only(after), tf.where(ended)[:, 0])
        return after, {"ended": ended, "steps": tf.reduce_max(after.step - beams.step),
                       "decode_steps": done.step,
                       **self._finish(done, tf.shape(after.log_probs)[1])}

    def _finish(self, beams: Beams, num_hypotheses) -> dict[str, tf.Tensor]:
        """beams of ended inputs (the model's tensors may be left out, see
        `hypotheses_only`) -> texts, scores, log_probs, num_tokens, each [batch, n]."""
        result = self.beam_search.finalize(beams, num_hypotheses)
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
        """Writes the SavedModel: the `translate` signature (also `serving_default`) for
        any TF Serving client, and `begin` / `advance` functions for recur's step
        scheduler."""
        with portable_kernels(self.model):
            fn = self.translate.get_concrete_function(*TRANSLATE_SIGNATURE)
            beams, _ = self.begin.get_concrete_function(*BEGIN_SIGNATURE).structured_outputs
            any_shape = tf.nest.map_structure(
                lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), beams)
            self.advance.get_concrete_function(any_shape, tf.TensorSpec([], tf.int32))
            tf.saved_model.save(self, str(path), signatures={"translate": fn,
                                                             "serving_default": fn})
