"""Attention translator: bidirectional recurrent encoder, recurrent decoder with Luong
attention (the lecture's many-to-one + one-to-many, with attention between them). The
decoder, its training and its decoding step are `model/recurrent_decoder.py`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import tensorflow as tf

from model.cells import recurrent_layer
from model.config import option
from model.recurrent_decoder import Encoded, RecurrentDecoder


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The translator's hyperparameters (flags of `python -m training.run translate`)."""

    embedding_dim: int = option(256, "subword embedding size")
    units: int = option(512, "decoder units; each encoder direction has half")
    encoder_layers: int = option(1, "stacked bidirectional encoder layers")
    cell: str = option("lstm", "recurrent cell of encoder and decoder: lstm, gru or rnn")
    dropout: float = option(0.2, "dropout on recurrent inputs and decoder outputs")


@keras.saving.register_keras_serializable(package="recur")
class Seq2Seq(RecurrentDecoder):
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
        if units % 2:
            raise ValueError(f"units must be even (two encoder directions), got {units}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.cell_type = cell
        self.dropout_rate = dropout
        self.encoder_layers = encoder_layers
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                                                name="embedding")
        self.encoder = [
            keras.layers.Bidirectional(
                recurrent_layer(cell, units // 2, return_sequences=True, dropout=dropout,
                                return_state=i == encoder_layers - 1),
                name=f"encoder_{i}")
            for i in range(encoder_layers)
        ]
        self.build_decoder(vocab_size, units, cell, dropout)

    @classmethod
    def from_hyperparameters(cls, vocab_size: int, config: Seq2SeqConfig) -> Seq2Seq:
        """A model with `config`'s hyperparameters (any config that has its fields)."""
        return cls(vocab_size, **{f.name: getattr(config, f.name)
                                  for f in dataclasses.fields(Seq2SeqConfig)})

    def encode(self, source: tf.Tensor, training: bool = False) -> Encoded:
        """source [batch, src_time] ids -> `Encoded`: the encoder's final states (both
        directions) start the decoder."""
        hidden = self.embedding(source)
        for layer in self.encoder[:-1]:
            hidden = layer(hidden, training=training)
        memory, *states = self.encoder[-1](hidden, training=training)
        half = len(states) // 2  # forward states, then backward states
        state = [tf.concat([f, b], axis=-1) for f, b in zip(states[:half], states[half:],
                                                              strict=True)]
        return Encoded(state, memory, tf.not_equal(source, 0))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim, "units": self.units,
                "cell": self.cell_type, "dropout": self.dropout_rate,
                "encoder_layers": self.encoder_layers}
