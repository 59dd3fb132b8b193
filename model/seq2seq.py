"""Attention translator: bidirectional recurrent encoder, recurrent decoder with Luong
attention (the lecture's many-to-one + one-to-many, with attention between them).

Training runs the decoder RNN over the whole target (teacher forcing; cuDNN
kernels on a GPU); decoding runs the same layer's cell one step at a time, so
both paths share weights and the exported step never contains a cuDNN-only op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from model.attention import LuongAttention
from model.beam_search import NEG_INF
from model.config import option
from model.gradient_norm import GradientNormModel
from model.tokenizer import BOS_ID, PAD_ID

RNN_LAYERS: dict[str, type[keras.layers.RNN]] = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "rnn": keras.layers.SimpleRNN,
}


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The translator's hyperparameters (flags of `python -m training.run translate`)."""

    embedding_dim: int = option(256, "subword embedding size")
    units: int = option(512, "decoder units; each encoder direction has half")
    encoder_layers: int = option(1, "stacked bidirectional encoder layers")
    cell: str = option("lstm", "recurrent cell of encoder and decoder: lstm, gru or rnn")
    dropout: float = option(0.2, "dropout on recurrent inputs and decoder outputs")


class DecodeContext(NamedTuple):
    """What each decoding step reads from the source: fixed for the whole search."""

    memory: tf.Tensor  # [batch, src_time, units] encoder outputs
    keys: tf.Tensor  # [batch, src_time, units] attention keys
    mask: tf.Tensor  # [batch, src_time] bool, True on real tokens


class Encoded(NamedTuple):
    """What the decoder needs from one batch of sources."""

    state: list[tf.Tensor]  # decoder initial state, each [batch, units]
    memory: tf.Tensor  # [batch, src_time, units] encoder outputs
    keys: tf.Tensor  # [batch, src_time, units] attention keys
    mask: tf.Tensor  # [batch, src_time] bool, True on real tokens


@keras.saving.register_keras_serializable(package="recur")
class Seq2Seq(GradientNormModel):
    """Shared-vocabulary encoder-decoder.

    call((source [batch, src_time], target_in [batch, tgt_time])) -> logits
    [batch, tgt_time, vocab]; id 0 is padding and is masked throughout.

    Args:
      units: decoder width; each encoder direction has units // 2, so the
        concatenated final states initialise the decoder directly.
      encoder_layers: stacked bidirectional layers.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 256, units: int = 512,
                 cell: str = "lstm", dropout: float = 0.1, encoder_layers: int = 1, **kwargs):
        super().__init__(**kwargs)
        if cell not in RNN_LAYERS:
            raise ValueError(f"cell must be one of {sorted(RNN_LAYERS)}, got {cell!r}")
        if units % 2:
            raise ValueError(f"units must be even (two encoder directions), got {units}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.cell_type = cell
        self.dropout_rate = dropout
        self.encoder_layers = encoder_layers
        layer = RNN_LAYERS[cell]
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                                                name="embedding")
        self.encoder = [
            keras.layers.Bidirectional(
                layer(units // 2, return_sequences=True, dropout=dropout,
                      return_state=i == encoder_layers - 1),
                name=f"encoder_{i}")
            for i in range(encoder_layers)
        ]
        self.decoder = layer(units, return_sequences=True, dropout=dropout, name="decoder")
        self.attention = LuongAttention(units, name="attention")
        self.output_dropout = keras.layers.Dropout(dropout)
        # float32 logits even under mixed precision: the softmax needs the range.
        self.projection = keras.layers.Dense(vocab_size, name="projection", dtype="float32")
        # PAD and BOS are never outputs: ruling them out in every path keeps decoding
        # consistent with teacher forcing (a PAD input would be masked, not read).
        self.logit_bias = np.zeros(vocab_size, np.float32)
        self.logit_bias[[PAD_ID, BOS_ID]] = NEG_INF

    @classmethod
    def from_hyperparameters(cls, vocab_size: int, config: Seq2SeqConfig) -> Seq2Seq:
        """A model with `config`'s hyperparameters (any config that has its fields)."""
        return cls(vocab_size, **{f.name: getattr(config, f.name)
                                  for f in dataclasses.fields(Seq2SeqConfig)})

    def encode(self, source: tf.Tensor, training: bool = False) -> Encoded:
        """source [batch, src_time] ids -> `Encoded`."""
        hidden = self.embedding(source)
        for layer in self.encoder[:-1]:
            hidden = layer(hidden, training=training)
        memory, *states = self.encoder[-1](hidden, training=training)
        half = len(states) // 2  # forward states, then backward states
        state = [tf.concat([f, b], axis=-1) for f, b in zip(states[:half], states[half:],
                                                              strict=True)]
        return Encoded(state, memory, self.attention.keys(memory), tf.not_equal(source, 0))

    def call(self, inputs, training: bool = False):
        source, target_in = inputs
        encoded = self.encode(source, training=training)
        hidden = self.decoder(self.embedding(target_in), initial_state=encoded.state,
                              training=training)
        attended = self.attention(hidden, encoded.memory, encoded.keys, encoded.mask)
        return self._logits(self.output_dropout(attended, training=training))

    def _logits(self, attended: tf.Tensor) -> tf.Tensor:
        return self.projection(attended) + self.logit_bias

    def start_decoding(self, source: tf.Tensor) -> tuple[list[tf.Tensor], DecodeContext]:
        """The beam search's view of this model: source [batch, src_time] ->
        (initial decoder state, each [batch, units]; attention context)."""
        encoded = self.encode(source)
        return encoded.state, DecodeContext(encoded.memory, encoded.keys, encoded.mask)

    def decode_step(self, tokens: tf.Tensor, state: list[tf.Tensor], context: DecodeContext,
                    steps: tf.Tensor | None = None) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One decoding step (a `beam_search.StepFn`): tokens [batch * beam] -> (log-probs
        [batch * beam, vocab], next state), attending over the context [batch, ...]. The
        recurrent state carries all it needs of the past, so `steps` goes unread."""
        # A plain lookup: the Embedding layer would attach a mask the cell cannot take.
        inputs = tf.nn.embedding_lookup(self.embedding.embeddings, tokens)
        hidden, state = self.decoder.cell(inputs, state, training=False)
        # An input's hypotheses attend as its queries: [batch, beam, units].
        batch = tf.shape(context.mask)[0]
        queries = tf.reshape(hidden, [batch, -1, self.units])
        attended = self.attention(queries, context.memory, context.keys, context.mask)
        return tf.nn.log_softmax(self._logits(tf.reshape(attended, [-1, self.units]))), \
            list(state)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim, "units": self.units,
                "cell": self.cell_type, "dropout": self.dropout_rate,
                "encoder_layers": self.encoder_layers}
