"""Token-level losses for sequence models."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="recur")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy against label-smoothed targets, averaged over real tokens.

    y_true [batch, time] ids with 0 as padding (ignored); y_pred [batch, time, vocab]
    logits. Smoothing spreads `smoothing` of each target's mass uniformly over the
    vocabulary (Szegedy et al. 2016), which keeps an over-confident decoder in check.
    Classes the model rules out (logit bias of NEG_INF, log-prob below -1e8) get no
    smoothing mass. The mean is taken over real tokens, so padding never dilutes it.
    """

    def __init__(self, smoothing: float = 0.1, name: str = "smoothed_cross_entropy", **kwargs):
        super().__init__(name=name, reduction="sum", **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32))
        y_true = tf.cast(y_true, tf.int32)
        nll = -tf.gather(log_probs, y_true, batch_dims=2)  # [batch, time]
        possible = log_probs > -1e8
        uniform = -(tf.reduce_sum(tf.where(possible, log_probs, 0.0), axis=-1)
                    / tf.reduce_sum(tf.cast(possible, tf.float32), axis=-1))
        mask = tf.cast(tf.not_equal(y_true, 0), tf.float32)
        per_token = (1.0 - self.smoothing) * nll + self.smoothing * uniform
        return per_token * mask / tf.maximum(tf.reduce_sum(mask), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}
