"""Cosine annealing of the learning rate over a run of fixed length or fixed time.

A run cut off by `--time-budget` at full learning rate ends noisier than it needs to:
annealing to the budget gives it the low-learning-rate finish a run of fixed length
gets from a step-based schedule (Loshchilov and Hutter 2017, without restarts).
"""

from __future__ import annotations

import logging
import math

import keras

from training.progress import TrainingClock

log = logging.getLogger(__name__)


class CosineAnnealing(keras.callbacks.Callback):
    """Before every step sets the learning rate to `base * (1 + cos(pi * f)) / 2`, where
    f is the share of the run done: of its `total_steps`, or of the clock's time budget
    if that is nearer its end. Logs each epoch's last rate as `learning_rate`."""

    def __init__(self, base: float, total_steps: int, clock: TrainingClock):
        super().__init__()
        self.base = base
        self.total_steps = total_steps
        self.clock = clock

    def done(self) -> float:
        """The share of the run behind us, 0..1."""
        share = int(self.model.optimizer.iterations) / max(1, self.total_steps)
        if self.clock.budget_seconds:
            share = max(share, self.clock.elapsed() / self.clock.budget_seconds)
        return min(1.0, share)

    def on_train_begin(self, logs=None) -> None:
        budget = (f" or {self.clock.budget_seconds / 60:g} minutes, whichever ends first"
                  if self.clock.budget_seconds else "")
        log.info("learning rate %g annealed to 0 along a cosine over %d steps%s",
                 self.base, self.total_steps, budget)

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self.model.optimizer.learning_rate = (
            self.base * (1 + math.cos(math.pi * self.done())) / 2)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
