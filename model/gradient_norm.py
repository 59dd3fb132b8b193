"""A Keras model whose training step also reports the global gradient norm.

The norm (before clipping) is what tells an RNN's exploding gradients apart from
a bad learning rate, so it goes to the logs and TensorBoard as `gradient_norm`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class GradientNormModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gradient_norm = keras.metrics.Mean(name="gradient_norm")

    def train_step(self, data):
        """Keras' TensorFlow train step (keras/src/backend/tensorflow/trainer.py), plus the norm.

        `_loss_tracker` is Keras' own running loss: updating it here keeps `loss` in the logs.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=True)
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
            scaled = self.optimizer.scale_loss(loss)  # no-op unless mixed precision
        gradients = tape.gradient(scaled, self.trainable_weights)
        # The norm of the true gradients: undo the loss scale (1 without mixed precision).
        unscale = tf.math.divide_no_nan(tf.cast(loss, tf.float32), tf.cast(scaled, tf.float32))
        self.gradient_norm.update_state(tf.linalg.global_norm(gradients) * unscale)
        self.optimizer.apply(gradients, self.trainable_weights)  # clips by global norm
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        logs = super().test_step(data)
        logs.pop("gradient_norm", None)  # a training-only figure; no `val_gradient_norm`
        return logs
