"""Training progress in logs: one line every few seconds, for runs without a terminal
(CI, Kubernetes jobs, `| tee`), where Keras' progress bar prints nothing until an epoch ends."""

from __future__ import annotations

import logging
import time

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


class TokenCount(keras.metrics.Sum):
    """Target tokens trained on in the epoch so far, which the clock turns into tokens/s:
    the positions the pipeline gives a weight above 0 or, for pipelines without weights,
    whose target is not padding (id 0 in every recur pipeline that pads targets)."""

    def __init__(self, name: str = "tokens", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        counted = (tf.not_equal(y_true, 0) if sample_weight is None
                   else tf.broadcast_to(sample_weight, tf.shape(y_true)) > 0)
        return super().update_state(tf.reduce_sum(tf.cast(counted, tf.float32)))


class ProgressLog(keras.callbacks.Callback):
    def __init__(self, every_seconds: float = 15.0):
        super().__init__()
        self.every_seconds = every_seconds

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch
        self.started = self.last = time.monotonic()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_seconds:
            self.last = now
            rate = (batch + 1) / (now - self.started)
            steps = self.params.get("steps") or 0
            left = f", {(steps - batch - 1) / rate:.0f} s left in the epoch" if steps else ""
            tokens = (logs or {}).get("tokens", 0.0) / (now - self.started)
            log.info("epoch %d/%d step %d/%s: loss %.4f (%.1f steps/s, %.0f tokens/s%s)",
                     self.epoch + 1, self.params.get("epochs", 0), batch + 1, steps or "?",
                     (logs or {}).get("loss", 0.0), rate, tokens, left)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        log.info("epoch %d/%d done in %.0f s: %s", epoch + 1, self.params.get("epochs", 0),
                 time.monotonic() - self.started, figures)


class TrainingClock(keras.callbacks.Callback):
    """Adds `train_seconds` (since fit began) and `tokens_per_second` (the epoch's
    `TokenCount` over its training time) to each epoch's logs, for curves against time
    and speed (the driver's history.csv, TensorBoard); with a budget, ends training at
    the first step past it (that epoch is still validated)."""

    def __init__(self, budget_seconds: float = 0.0):
        super().__init__()
        self.budget_seconds = budget_seconds

    def on_train_begin(self, logs=None) -> None:
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch_started, self.training_ended = time.monotonic(), None

    def on_test_begin(self, logs=None) -> None:
        self.training_ended = time.monotonic()  # validation follows the epoch's training

    def elapsed(self) -> float:
        """Seconds since fit began."""
        return time.monotonic() - self.started

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.budget_seconds and self.elapsed() >= self.budget_seconds:
            if not self.model.stop_training:
                log.info("time budget of %.0f s spent: training stops after this epoch's "
                         "validation", self.budget_seconds)
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is None:
            return
        logs["train_seconds"] = round(self.elapsed(), 1)
        if "tokens" in logs:
            trained = (self.training_ended or time.monotonic()) - self.epoch_started
            logs["tokens_per_second"] = round(logs["tokens"] / max(trained, 1e-9), 1)
