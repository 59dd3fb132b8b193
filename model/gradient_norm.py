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
        return synchronized(self.compute_metrics(x, y, y_pred, sample_weight=sample_weight))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3's TensorFlow trainer builds the model's state from a first batch that it
        averages across replicas with `strategy.reduce`, which takes one tensor: under
        MultiWorkerMirroredStrategy with several workers and a batch of several tensors it
        raises. This worker's own part of that batch has the shapes the build needs, and
        once everything is built (from fit's first call on), no batch is taken at all: a
        validation pass must not lose one of its batches."""
        distributed = self.distribute_strategy is not tf.distribute.get_strategy()
        if iterator is None or data_batch is not None or not distributed:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.built and all(getattr(m, "built", True) for m in self.metrics):
            return None
        for _, _, batches in iterator:
            local = tf.nest.map_structure(
                lambda v: self.distribute_strategy.experimental_local_results(v)[0],
                next(batches))
            return super()._maybe_symbolic_build(data_batch=local)
        return None

    def test_step(self, data):
        logs = super().test_step(data)
        logs.pop("gradient_norm", None)  # a training-only figure; no `val_gradient_norm`
        return synchronized(logs)


def synchronized(logs: dict) -> dict:
    """Step outputs that Keras can average across workers. Keras 3's TensorFlow trainer
    averages each output over its first axis under MultiWorkerMirroredStrategy, which
    fails on a scalar: with several workers each figure becomes a vector of one, and
    the average (the same on every worker, so callbacks such as early stopping decide
    alike everywhere) is a scalar again."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    cluster = strategy.cluster_resolver.cluster_spec()
    if sum(cluster.num_tasks(job) for job in cluster.jobs) < 2:
        return logs
    return {name: tf.reshape(tf.cast(value, tf.float32), [1]) for name, value in logs.items()}
