"""The reverse task's model side: an in-graph character tokenizer and the exported
module (the translator's Seq2Seq, any sampler options per input, streaming on)."""

from __future__ import annotations

import tensorflow as tf

from model.beam_search import BeamSearch
from model.characters import Characters
from model.contract import DECODE_STEPS, SOURCE_TOKENS
from model.sampling import sampling
from model.seq2seq import Seq2Seq
from model.step_functions import DecoderExport
from model.tokenizer import BOS_ID, EOS_ID
from tests.reverse.contract import MAX_CHARS, REVERSE


class CharTokenizer(Characters):
    """The char LM's alphabet with EOS appended to each text: the interface of
    `model.tokenizer.SubwordTokenizer`, so the training pipeline takes it."""

    @property
    def vocab_size(self) -> int:
        return self.size

    def tokenize(self, texts: tf.Tensor, max_tokens: int | None = None) -> tf.RaggedTensor:
        """[batch] strings -> [batch, (time)] ids, truncated, EOS appended."""
        ids = self.encode(texts)
        if max_tokens is not None:
            ids = ids[:, :max_tokens - 1]
        return tf.concat([ids, tf.fill([ids.nrows(), 1], EOS_ID)], axis=1)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        return self.decode(ids)


class Reverser(DecoderExport):
    streams = True

    def __init__(self, model: Seq2Seq, tokenizer: CharTokenizer):
        super().__init__("reverser", BeamSearch(BOS_ID, EOS_ID), model, tokenizer)

    @tf.function(input_signature=REVERSE.signature.inputs)
    def reverse(self, texts, beam_width, num_hypotheses, length_penalty, max_length,
                temperature, top_k, top_p, seed):
        beams, source_tokens = self._begin(texts, beam_width, length_penalty, max_length,
                                           temperature, top_k, top_p, seed)
        beams = self.beam_search.run(self.decode_step, beams)
        return {**self.finish(beams, num_hypotheses), SOURCE_TOKENS: source_tokens,
                DECODE_STEPS: tf.reduce_max(beams.step)}

    @tf.function(input_signature=REVERSE.begin.inputs)
    def begin(self, texts, beam_width, length_penalty, max_length, temperature, top_k, top_p,
              seed):
        return self._begin(texts, beam_width, length_penalty, max_length, temperature, top_k,
                           top_p, seed)

    def _begin(self, texts, beam_width, length_penalty, max_length, temperature, top_k, top_p,
               seed):
        source = self.tokenizer.tokenize(texts, MAX_CHARS)
        source_tokens = tf.cast(source.row_lengths(), tf.int32)
        batch = tf.shape(source_tokens)[0]
        state, context = self.model.start_decoding(source.to_tensor())
        return self.beam_search.initialize(
            state, context, beam_width, length_penalty, tf.broadcast_to(max_length, [batch]),
            sampling=sampling(temperature, top_k, top_p, seed, batch)), source_tokens

    def save(self, path) -> None:
        self.save_functions(path, REVERSE, self.reverse, self.begin)
