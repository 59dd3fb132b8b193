"""The recurrent decoder that translation and captioning share: written once.

An encoder (a subclass's: a bidirectional RNN over a sentence, a CNN over an image)
gives the decoder its first state and a memory to attend over; the decoder writes the
output one token at a time. Training runs the decoder RNN over the whole target
(teacher forcing; cuDNN kernels on a GPU); decoding runs the same layer's cell one step
at a time through the one beam search, so both paths share weights and the exported
step never contains a cuDNN-only op.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from model.attention import LuongAttention
from model.beam_search import NEG_INF
from model.cells import recurrent_layer
from model.gradient_norm import GradientNormModel
from model.tokenizer import BOS_ID, PAD_ID


class DecodeContext(NamedTuple):
    """What each decoding step reads from the input: fixed for the whole search, and laid
    out for the step's products (`LuongAttention.step`)."""

    memory_t: tf.Tensor  # [batch, features, src_time] encoder outputs
    keys_t: tf.Tensor  # [batch, units, src_time] attention keys
    mask: tf.Tensor  # [batch, src_time] bool, True on real positions


class Encoded(NamedTuple):
    """What the decoder needs from one batch of inputs."""

    state: list[tf.Tensor]  # decoder initial state, each [batch, units]
    memory: tf.Tensor  # [batch, src_time, features] encoder outputs
    mask: tf.Tensor  # [batch, src_time] bool, True on real positions


class RecurrentDecoder(GradientNormModel):
    """Base of the encoder-decoder models.

    Subclasses create `self.embedding` (a `keras.layers.Embedding` over output ids, id 0
    padding), then call `build_decoder`, and implement `encode`. `call((inputs,
    target_in [batch, tgt_time]))` -> logits [batch, tgt_time, vocab].
    """

    def build_decoder(self, vocab_size: int, units: int, cell: str, dropout: float,
                      attention: bool = True) -> None:
        """The decoder's layers: `units` wide, Luong attention over the memory unless
        `attention` is False (the decoder then reads the input only through its first
        state, as Show and Tell does)."""
        self.units = units
        self.decoder = recurrent_layer(cell, units, return_sequences=True, dropout=dropout,
                                       name="decoder")
        self.attention = LuongAttention(units, name="attention") if attention else None
        self.output_dropout = keras.layers.Dropout(dropout)
        # float32 logits even under mixed precision: the softmax needs the range.
        self.projection = keras.layers.Dense(vocab_size, name="projection", dtype="float32")
        # PAD and BOS are never outputs: ruling them out in every path keeps decoding
        # consistent with teacher forcing (a PAD input would be masked, not read).
        self.logit_bias = np.zeros(vocab_size, np.float32)
        self.logit_bias[[PAD_ID, BOS_ID]] = NEG_INF

    def encode(self, inputs: tf.Tensor, training: bool = False) -> Encoded:
        raise NotImplementedError

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
        source, target_in = inputs
        encoded = self.encode(source, training=training)
        hidden = self.decoder(self.embedding(target_in), initial_state=encoded.state,
                              training=training)
        if self.attention is not None:
            hidden = self.attention(hidden, encoded.memory,
                                    self.attention.keys(encoded.memory), encoded.mask)
        return self.projection(self.output_dropout(hidden, training=training)) + self.logit_bias

    def _step_logits(self, hidden: tf.Tensor, kernel: tf.Tensor | None = None) -> tf.Tensor:
        """A decoding step's logits, [batch, units] -> float32 [batch, vocab], equal to
        `call`'s: the ruled-out tokens' bias joins the projection's, so that the product's
        own kernel adds both (a pass less over [batch, vocab]: 2 % of a step at 256 x
        8,000; a real token's bias gains 0, so its logit is the same to the bit). With
        `kernel`, the product runs in its dtype (bfloat16: four times the float32 speed on
        CPUs with AMX at 256 rows) and its result is cast back before the bias."""
        kernel = self.projection.kernel if kernel is None else kernel
        product = tf.matmul(tf.cast(hidden, kernel.dtype), kernel)
        return tf.nn.bias_add(tf.cast(product, tf.float32), self.projection.bias + self.logit_bias)

    def start_decoding(self, source: tf.Tensor) -> tuple[list[tf.Tensor], DecodeContext]:
        """The beam search's view of this model: a batch of inputs -> (initial decoder
        state, each [batch, units]; attention context)."""
        encoded = self.encode(source)
        memory_t = tf.transpose(encoded.memory, [0, 2, 1])
        keys_t = (memory_t if self.attention is None
                  else tf.transpose(self.attention.keys(encoded.memory), [0, 2, 1]))
        return encoded.state, DecodeContext(memory_t, keys_t, encoded.mask)

    def decode_step(self, tokens: tf.Tensor, state: list[tf.Tensor], context: DecodeContext,
                    steps: tf.Tensor | None = None, projection: tf.Tensor | None = None
                    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One decoding step (a `beam_search.StepFn`): tokens [batch * beam] -> (log-probs
        [batch * beam, vocab], next state), attending over the context [batch, ...]. The
        recurrent state carries all it needs of the past, so `steps` goes unread.
        `projection`: the output projection's kernel [units, vocab] to decode with, in
        its own dtype (an export's bfloat16 copy, `DecoderExport`); the layer's if None."""
        # A plain lookup: the Embedding layer would attach a mask the cell cannot take.
        inputs = tf.nn.embedding_lookup(self.embedding.embeddings, tokens)
        hidden, state = self.decoder.cell(inputs, state, training=False)
        if self.attention is not None:
            # An input's hypotheses attend as its queries: [batch, beam, units].
            batch = tf.shape(context.mask)[0]
            queries = tf.reshape(hidden, [batch, -1, self.units])
            attended = self.attention.step(queries, context.memory_t, context.keys_t,
                                           context.mask)
            hidden = tf.reshape(attended, [-1, self.units])
        return tf.nn.log_softmax(self._step_logits(hidden, projection)), list(state)
