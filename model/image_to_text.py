"""Image captioner: a CNN trained from scratch encodes the image, the recurrent decoder
writes its caption (the lecture's one-to-many), optionally attending over the CNN's
spatial feature map at every step (Show, Attend and Tell, Xu et al. 2015) rather than
reading the image only through its first state (Show and Tell, Vinyals et al. 2015).
The decoder, its training and its decoding step are `model/recurrent_decoder.py`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import tensorflow as tf

from model.config import option
from model.recurrent_decoder import Encoded, RecurrentDecoder


@dataclass(frozen=True)
class ImageToTextConfig:
    """The captioner's hyperparameters (flags of `python -m training.run caption`)."""

    image_size: int = option(64, "images are scaled to fit a square of this many pixels")
    channels: str = option("16,32,64,128", "output channels of the CNN's blocks (two 3x3 "
                                            "convolutions each, 2x2 max-pooling between "
                                            "blocks)")
    embedding_dim: int = option(128, "subword embedding size")
    units: int = option(256, "decoder units")
    cell: str = option("lstm", "recurrent cell of the decoder: lstm, gru or rnn")
    attention: bool = option(True, "attend over the CNN's feature map at every step "
                                   "(Show, Attend and Tell); off: the image enters through "
                                   "the decoder's first state only (Show and Tell)")
    dropout: float = option(0.2, "dropout on image features, recurrent inputs and "
                                 "decoder outputs")


@keras.saving.register_keras_serializable(package="recur")
class ImageEncoder(keras.layers.Layer):
    """images [batch, size, size, 3] in [0, 1] -> feature map [batch, positions,
    channels[-1]]: blocks of two 3x3 convolutions with batch normalisation and ReLU,
    2x2 max-pooling after every block but the last (64 pixels, 4 blocks: 8x8 = 64
    positions)."""

    def __init__(self, channels: tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.channels = tuple(channels)
        self.blocks = []
        for i, width in enumerate(self.channels):
            block = []
            for j in range(2):
                block += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                              name=f"conv{i}_{j}"),
                          keras.layers.BatchNormalization(name=f"norm{i}_{j}"),
                          keras.layers.ReLU()]
            if i < len(self.channels) - 1:
                block.append(keras.layers.MaxPooling2D(2))
            self.blocks.append(block)

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        hidden = images * 2.0 - 1.0  # centred on 0: white is 1, black -1
        for block in self.blocks:
            for layer in block:
                hidden = layer(hidden, training=training)
        shape = tf.shape(hidden)
        return tf.reshape(hidden, [shape[0], shape[1] * shape[2], self.channels[-1]])

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": list(self.channels)}


@keras.saving.register_keras_serializable(package="recur")
class ImageToText(RecurrentDecoder):
    """call((images [batch, size, size, 3] float in [0, 1], target_in [batch, tgt_time]))
    -> logits [batch, tgt_time, vocab]; output id 0 is padding and is masked.

    The mean of the feature map, through one dense layer per state tensor, is the
    decoder's first state; with attention, the feature map is its memory.
    """

    def __init__(self, vocab_size: int, image_size: int = 64,
                 channels: tuple[int, ...] | str = (32, 64, 128, 256),
                 embedding_dim: int = 128, units: int = 256, cell: str = "lstm",
                 attention: bool = True, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(channels, str):
            channels = tuple(int(c) for c in channels.split(","))
        self.vocab_size = vocab_size
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        self.cell_type = cell
        self.dropout_rate = dropout
        self.encoder = ImageEncoder(channels, name="image_encoder")
        self.feature_dropout = keras.layers.Dropout(dropout)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                                                name="embedding")
        self.build_decoder(vocab_size, units, cell, dropout, attention)
        self.initial_state = [keras.layers.Dense(units, activation="tanh", name=f"state{i}")
                              for i in range(2 if cell == "lstm" else 1)]

    @classmethod
    def from_hyperparameters(cls, vocab_size: int, config: ImageToTextConfig) -> ImageToText:
        """A model with `config`'s hyperparameters (any config that has its fields)."""
        return cls(vocab_size, **{f.name: getattr(config, f.name)
                                  for f in dataclasses.fields(ImageToTextConfig)})

    def encode(self, images: tf.Tensor, training: bool = False) -> Encoded:
        """images [batch, size, size, 3] -> `Encoded`: memory [batch, positions, channels],
        all positions real."""
        features = self.feature_dropout(self.encoder(images, training=training),
                                        training=training)
        pooled = tf.reduce_mean(features, axis=1)
        state = [dense(pooled) for dense in self.initial_state]
        return Encoded(state, features, tf.ones(tf.shape(features)[:2], tf.bool))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "image_size": self.image_size, "channels": list(self.encoder.channels),
                "embedding_dim": self.embedding_dim, "units": self.units,
                "cell": self.cell_type, "attention": self.attention is not None,
                "dropout": self.dropout_rate}
