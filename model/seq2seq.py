"""Encoder-decoder recurrent translator (the lecture's many-to-one + one-to-many).

The decoder is a Keras RNN layer for teacher-forced training (cuDNN kernels on
a GPU) and the same layer's cell for step-wise decoding, so both paths share
weights and the step path never contains a cuDNN-only op.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

RNN_LAYERS: dict[str, type[keras.layers.RNN]] = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "rnn": keras.layers.SimpleRNN,
}


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Architecture of the translator; the vocabulary comes from the tokenizer."""

    embedding_dim: int = 256
    units: int = 512
    cell: str = "lstm"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.cell not in RNN_LAYERS:
            raise ValueError(f"cell must be one of {sorted(RNN_LAYERS)}, got {self.cell!r}")


@keras.saving.register_keras_serializable(package="recur")
class Seq2Seq(keras.Model):
    """Shared-vocabulary encoder-decoder.

    call((source [batch, src_time], target_in [batch, tgt_time])) -> logits
    [batch, tgt_time, vocab]; id 0 is padding and is masked throughout.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 256, units: int = 512,
                 cell: str = "lstm", dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.cell_type = cell
        self.dropout_rate = dropout
        layer = RNN_LAYERS[cell]
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                                                name="embedding")
        self.encoder = layer(units, return_state=True, dropout=dropout, name="encoder")
        self.decoder = layer(units, return_sequences=True, dropout=dropout, name="decoder")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.projection = keras.layers.Dense(vocab_size, name="projection")

    @classmethod
    def from_config_dataclass(cls, vocab_size: int, config: Seq2SeqConfig) -> Seq2Seq:
        return cls(vocab_size, config.embedding_dim, config.units, config.cell, config.dropout)

    def encode(self, source: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        """source [batch, src_time] ids -> decoder initial state, a list of [batch, units]."""
        outputs = self.encoder(self.embedding(source), training=training)
        return list(outputs[1:])

    def call(self, inputs, training: bool = False):
        source, target_in = inputs
        state = self.encode(source, training=training)
        hidden = self.decoder(self.embedding(target_in), initial_state=state, training=training)
        return self.projection(self.output_dropout(hidden, training=training))

    def step(self, tokens: tf.Tensor, state: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One decoding step: tokens [n] -> (log-probs [n, vocab], next state)."""
        # A plain lookup: the Embedding layer would attach a mask the cell cannot take.
        inputs = tf.nn.embedding_lookup(self.embedding.embeddings, tokens)
        hidden, state = self.decoder.cell(inputs, state, training=False)
        return tf.nn.log_softmax(self.projection(hidden)), list(state)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim, "units": self.units,
                "cell": self.cell_type, "dropout": self.dropout_rate}
