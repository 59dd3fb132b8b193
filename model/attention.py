"""Luong attention ("general" score), shared by teacher-forced training and step decoding."""

from __future__ import annotations

import keras
import tensorflow as tf

from model.beam_search import NEG_INF


@keras.saving.register_keras_serializable(package="recur")
class LuongAttention(keras.layers.Layer):
    """score(h_t, m_s) = h_t . W m_s; output tanh(W_c [context; h_t]) (Luong et al. 2015).

    Luong's attention reads the decoder's *current* output, so in training the
    decoder RNN runs over the whole target at once (cuDNN on a GPU) and attention
    is one batched matrix product afterwards; Bahdanau's reads the previous
    state and would force a step-by-step loop in training as well.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True  # the queries' mask passes through to the output
        self.key_projection = keras.layers.Dense(units, use_bias=False, name="keys")
        self.output_projection = keras.layers.Dense(units, activation="tanh", name="combine")

    def keys(self, memory):
        """memory [batch, src_time, units] -> keys [batch, src_time, units], once per input."""
        return self.key_projection(memory)

    def call(self, queries, memory, keys, memory_mask):
        """queries [batch, time, units] -> attentional states [batch, time, units].

        memory_mask [batch, src_time] is True on real source tokens.
        """
        scores = tf.einsum("btu,bsu->bts", queries, keys)
        scores = tf.where(memory_mask[:, None, :], scores, tf.cast(NEG_INF, scores.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.einsum("bts,bsu->btu", weights, memory)
        return self.output_projection(tf.concat([context, queries], axis=-1))

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}
