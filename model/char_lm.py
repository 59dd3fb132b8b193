"""Character-level language model: a recurrent or a WaveNet backbone over characters.

The seed's "hello" model made real: characters in, a distribution over the next
character at every position out, trained with teacher forcing and sampled one character
at a time. Two backbones share one interface, so that training, the step function of
the one beam search and the export never ask which one runs:

- `RecurrentBackbone`: stacked recurrent layers, the cell a flag (rnn, lstm, gru). Its
  decoding state is each layer's cell state.
- `WaveNetBackbone`: stacked causal 1-D convolutions of kernel width 2 whose dilation
  doubles at each layer (1, 2, 4, ... up to `dilation_cycle`, then again from 1), each
  with a gated activation (tanh x sigmoid), a residual and a skip connection (van den
  Oord et al. 2016). Generation keeps per layer a queue of the inputs it will still
  convolve with (Fast WaveNet, Paine et al. 2016): one step costs one column per layer,
  not the whole receptive field.

Both read a sequence whole (`sequence`: training, and reading a prompt, which also gives
the state to continue from) or one character at a time (`step`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import tensorflow as tf

from model.cells import recurrent_layer
from model.config import option
from model.gradient_norm import GradientNormModel

BACKBONES = ("rnn", "lstm", "gru", "wavenet")

State = list[tf.Tensor]
"""A backbone's decoding state: a flat list of tensors, each [batch, ...]."""


@dataclass(frozen=True)
class CharLMConfig:
    """The character LM's hyperparameters (flags of `python -m training.run charlm`)."""

    backbone: str = option("lstm", "rnn (vanilla), lstm, gru, or wavenet (dilated causal "
                                   "convolutions)")
    embedding_dim: int = option(64, "character embedding size")
    units: int = option(512, "units of each recurrent layer, or WaveNet's residual "
                             "channels")
    layers: int = option(1, "stacked recurrent layers, or WaveNet layers")
    dilation_cycle: int = option(8, "WaveNet: dilations 1, 2, 4, ... double for this many "
                                    "layers, then start again from 1")
    skip_channels: int = option(256, "WaveNet: channels of the skip connections summed "
                                     "into the output")
    dropout: float = option(0.1, "dropout between layers and before the output")


class RecurrentBackbone(keras.layers.Layer):
    """Stacked recurrent layers: [batch, time, embedding] -> [batch, time, units]."""

    def __init__(self, cell: str, units: int, layers: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.rnns = [recurrent_layer(cell, units, return_sequences=True, return_state=True,
                                     name=f"{cell}{i}") for i in range(layers)]
        self.dropout = keras.layers.Dropout(dropout)

    def initial_state(self, batch: tf.Tensor) -> State:
        """The state before any character: zeros, [batch, units] per cell state."""
        per_layer = 2 if isinstance(self.rnns[0], keras.layers.LSTM) else 1
        return [tf.zeros([batch, self.units]) for _ in self.rnns for _ in range(per_layer)]

    def sequence(self, x: tf.Tensor, state: State, lengths: tf.Tensor | None = None,
                 training: bool = False) -> tuple[tf.Tensor, State]:
        """x [batch, time, d], state -> (outputs [batch, time, units], state after each
        row's last position: its `lengths` [batch] if given, else `time`)."""
        mask = None if lengths is None else tf.sequence_mask(lengths, tf.shape(x)[1])
        states, per_layer = [], len(state) // len(self.rnns)
        for i, rnn in enumerate(self.rnns):
            # Masked (padding) positions keep the state they found.
            x, *final = rnn(x, initial_state=state[i * per_layer:(i + 1) * per_layer],
                            mask=mask, training=training)
            x = self.dropout(x, training=training)
            states += final
        return x, states

    def step(self, x: tf.Tensor, state: State) -> tuple[tf.Tensor, State]:
        """x [batch, d], state -> (output [batch, units], next state)."""
        states, per_layer = [], len(state) // len(self.rnns)
        for i, rnn in enumerate(self.rnns):
            x, new = rnn.cell(x, state[i * per_layer:(i + 1) * per_layer])
            states += new if isinstance(new, list | tuple) else [new]
        return x, states


class WaveNetBackbone(keras.layers.Layer):
    """Gated, dilated causal convolutions: [batch, time, embedding] -> [batch, time,
    skip_channels]. Position t sees positions t - receptive_field + 1 ... t."""

    def __init__(self, channels: int, skip_channels: int, layers: int, dilation_cycle: int,
                 dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.dilations = [2 ** (i % dilation_cycle) for i in range(layers)]
        self.receptive_field = 1 + sum(self.dilations)  # kernel width 2
        self.inputs = keras.layers.Dense(channels, name="wavenet_in")
        # Each layer's two taps: the input `dilation` steps back, and the current one.
        self.past = [keras.layers.Dense(2 * channels, use_bias=False, name=f"past{i}")
                     for i in range(layers)]
        self.now = [keras.layers.Dense(2 * channels, name=f"now{i}") for i in range(layers)]
        self.residual = [keras.layers.Dense(channels, name=f"residual{i}")
                         for i in range(layers)]
        self.skip = [keras.layers.Dense(skip_channels, name=f"skip{i}") for i in range(layers)]
        self.dropout = keras.layers.Dropout(dropout)

    def initial_state(self, batch: tf.Tensor) -> State:
        """Per layer, the last `dilation` inputs it read: zeros before any character
        (the causal convolutions' padding)."""
        return [tf.zeros([batch, d, self.channels]) for d in self.dilations]

    def _layer(self, i: int, past: tf.Tensor, now: tf.Tensor, training: bool
               ) -> tuple[tf.Tensor, tf.Tensor]:
        """One layer on any leading shape [..., channels] -> (its output, its skip)."""
        filter_, gate = tf.split(self.past[i](past) + self.now[i](now), 2, axis=-1)
        gated = self.dropout(tf.tanh(filter_) * tf.sigmoid(gate), training=training)
        return now + self.residual[i](gated), self.skip[i](gated)

    def sequence(self, x: tf.Tensor, state: State, lengths: tf.Tensor | None = None,
                 training: bool = False) -> tuple[tf.Tensor, State]:
        """x [batch, time, d], state (what came before x) -> (outputs [batch, time,
        skip_channels], state after each row's last position: its `lengths` [batch] if
        given, else `time`)."""
        h = self.inputs(x)
        time = tf.shape(x)[1]
        ends = tf.fill([tf.shape(x)[0]], time) if lengths is None else lengths
        skips, states = 0.0, []
        for i, d in enumerate(self.dilations):
            history = tf.concat([state[i], h], axis=1)  # [batch, d + time, channels]
            h, skip = self._layer(i, history[:, :-d], h, training)
            # The queue after position `end` holds history[end : end + d] (causal: later
            # positions, padding included, never reach it).
            window = ends[:, None] + tf.range(d)[None, :]  # [batch, d]
            states.append(tf.gather(history, window, batch_dims=1))
            skips += skip
        return tf.nn.relu(skips), states

    def step(self, x: tf.Tensor, state: State) -> tuple[tf.Tensor, State]:
        """x [batch, d], state -> (output [batch, skip_channels], next state): one
        column per layer, each queue shifted by one."""
        h = self.inputs(x)
        skips, states = 0.0, []
        for i, queue in enumerate(state):
            new_h, skip = self._layer(i, queue[:, 0], h, False)
            states.append(tf.concat([queue[:, 1:], h[:, None]], axis=1))
            h, skips = new_h, skips + skip
        return tf.nn.relu(skips), states


@keras.saving.register_keras_serializable(package="recur")
class CharLM(GradientNormModel):
    """chars [batch, time] int32 -> logits [batch, time, vocab] float32: at each position,
    the next character's. `step` and `read` serve decoding.

    Args:
      vocab_size: character ids 0 .. vocab_size - 1 (the vocabulary's own convention
        says which are special).
    """

    def __init__(self, vocab_size: int, config: CharLMConfig, **kwargs):
        super().__init__(**kwargs)
        if config.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {config.backbone!r}")
        self.vocab_size, self.config = vocab_size, config
        self.embedding = keras.layers.Embedding(vocab_size, config.embedding_dim,
                                                name="char_embedding")
        self.backbone = (
            WaveNetBackbone(config.units, config.skip_channels, config.layers,
                            config.dilation_cycle, config.dropout, name="wavenet")
            if config.backbone == "wavenet" else
            RecurrentBackbone(config.backbone, config.units, config.layers, config.dropout,
                              name=config.backbone))
        self.output_dropout = keras.layers.Dropout(config.dropout)
        self.logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")

    def build(self, input_shape) -> None:
        self.call(tf.zeros([1, 1], tf.int32))  # creates every sublayer's weights

    def call(self, chars, training=False):
        outputs, _ = self.read(chars, self.initial_state(tf.shape(chars)[0]), training=training)
        return self.next_logits(outputs, training)

    def initial_state(self, batch: tf.Tensor) -> State:
        return self.backbone.initial_state(batch)

    def read(self, chars: tf.Tensor, state: State, lengths: tf.Tensor | None = None,
             training: bool = False) -> tuple[tf.Tensor, State]:
        """chars [batch, time], state before them -> (backbone outputs [batch, time,
        features], state after them): a prompt read in one pass. With `lengths` [batch],
        row i's state is the one after its first lengths[i] characters (the rest is
        padding)."""
        return self.backbone.sequence(self.embedding(chars), state, lengths, training)

    def next_logits(self, outputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Backbone outputs [..., features] -> next-character logits [..., vocab]."""
        return self.logits(self.output_dropout(outputs, training=training))

    def step(self, chars: tf.Tensor, state: State) -> tuple[tf.Tensor, State]:
        """chars [batch], state -> (log-probabilities of the next character [batch,
        vocab], state after chars)."""
        output, state = self.backbone.step(self.embedding(chars), state)
        return tf.nn.log_softmax(self.logits(output)), state

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config: dict) -> CharLM:
        hyper = CharLMConfig(**config.pop("config"))
        return cls(config.pop("vocab_size"), hyper, **config)

