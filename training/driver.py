"""The one training driver: the loop every task shares, written once.

A task (`TrainingTask`, one module per model kind, listed in `training.tasks`)
supplies its corpus and tf.data pipelines, model, loss and metrics, exporter and
evaluation; the driver does the rest: seeding, mixed precision, Adam with gradient
clipping by global norm, a tf.distribute strategy (training.distribute), fit with
progress, TensorBoard (loss, gradient norm) and
`history.csv` (every epoch's figures and training time), an optional time budget,
learning-rate decay on a dev plateau or cosine annealing to the run's end, resume from
the run directory, early stopping on the task's dev figure, the trained weights saved
in the run directory (`--init-weights` starts a run from them; with `--epochs 0` it
only exports and evaluates again), then a staged export, evaluated through the
exported functions themselves, with its `recur.json`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import tensorflow as tf

from model.contract import CONTRACT_VERSION, Meta
from model.export import directory_size, staged_export
from training.annealing import CosineAnnealing
from training.config import TrainingConfig
from training.distribute import distribution
from training.pipeline import Batches
from training.progress import ProgressLog, TokenCount, TrainingClock

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"


@dataclass
class Prepared:
    """What a task's `prepare` gives the driver; tasks subclass it to keep what their
    export and evaluation need (vocabulary, held-out examples...)."""

    train: Batches  # (inputs, targets[, sample weights]) batches, reshuffled every epoch
    dev: Batches


class TrainingTask:
    """A model kind on the training side. Subclasses set the class attributes and
    implement the methods."""

    name: ClassVar[str]  # `python -m training.run NAME`, and recur.json's task
    description: ClassVar[str]  # one line for --help
    config: ClassVar[type[TrainingConfig]]
    profiles: ClassVar[dict[str, dict[str, Any]]]  # `quick` first: the default
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")  # early stopping on

    def prepare(self, config: Any, run_dir: Path) -> Prepared:
        raise NotImplementedError

    def build_model(self, config: Any, data: Prepared) -> keras.Model:
        """The model, not compiled (the driver compiles it with `loss` and `metrics`)."""
        raise NotImplementedError

    def loss(self, config: Any) -> keras.losses.Loss:
        raise NotImplementedError

    def metrics(self, config: Any) -> list:
        """Metrics logged per epoch, weighted by the pipeline's sample weights if any."""
        return []

    def export(self, config: Any, model: keras.Model, data: Prepared, path: Path) -> None:
        """Writes the SavedModel into `path` (the staging directory)."""
        raise NotImplementedError

    def evaluate(self, config: Any, path: Path, data: Prepared) -> dict[str, float]:
        """Evaluation figures, computed through the export at `path`."""
        raise NotImplementedError

    def metadata(self, config: Any, data: Prepared) -> dict[str, Any]:
        """The task's own recur.json keys (labels, option defaults...)."""
        return {}


@dataclass
class TrainingReport:
    export_path: Path | None  # None on a worker that is not the chief
    export_bytes: int
    train_seconds: float
    epochs_run: list[int]
    metrics: dict[str, float]


def train(task: TrainingTask, config: TrainingConfig,
          extra_callbacks: tuple[keras.callbacks.Callback, ...] = ()) -> TrainingReport:
    """Trains, exports and evaluates; `extra_callbacks` go to Keras' fit after ours."""
    previous = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train(task, config, extra_callbacks)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(task: TrainingTask, config: TrainingConfig,
           extra_callbacks: tuple[keras.callbacks.Callback, ...]) -> TrainingReport:
    dist = distribution(config.strategy, config.workers, config.worker_index)
    keras.utils.set_random_seed(config.seed)
    run_dir = Path(config.run_dir) / config.name
    if not dist.is_chief:  # its own logs, backup and weights; the chief's stay whole
        run_dir = run_dir / f"worker-{dist.worker_index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = task.prepare(config, run_dir)
    with dist.strategy.scope():  # the model's and optimizer's variables, mirrored
        model = task.build_model(config, data)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate,
                                            global_clipnorm=config.clip_norm),
            loss=task.loss(config), weighted_metrics=[*task.metrics(config), TokenCount()],
            jit_compile=config.jit_compile)
        for inputs, *_ in data.train.dataset.take(1):
            model(inputs)  # build the weights, so BackupAndRestore can restore into them
        if config.init_weights:
            model.optimizer.build(model.trainable_variables)  # its state is in the file too
            model.load_weights(config.init_weights)
            log.info("starting from the weights and optimizer state in %s (learning rate "
                     "%.3g)", config.init_weights, float(model.optimizer.learning_rate))
    monitor, mode = task.monitor
    clock = TrainingClock(config.time_budget * 60)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),  # resume if interrupted
        clock,  # before the loggers: they show its time
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=50),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if config.cosine_decay:  # before the loggers: they show its learning rate
        callbacks.insert(2, CosineAnnealing(config.learning_rate,
                                            config.epochs * data.train.steps, clock))
    if config.decay_factor:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=config.decay_factor,
            patience=config.decay_patience, min_delta=0, verbose=1))
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=config.patience, restore_best_weights=True,
            verbose=1))
    interactive = sys.stderr.isatty()
    if not interactive:
        callbacks.append(ProgressLog())
    started = time.monotonic()
    # Known steps per epoch on repeating pipelines: Keras keeps one iterator each for
    # training and validation (see training/pipeline.py).
    history = model.fit(
        data.train.dataset, steps_per_epoch=data.train.steps, epochs=config.epochs,
        validation_data=data.dev.dataset if data.dev.steps else None,
        validation_steps=data.dev.steps or None, shuffle=False,
        callbacks=[*callbacks, *extra_callbacks], verbose=1 if interactive else 0)
    train_seconds = time.monotonic() - started
    model.save_weights(run_dir / WEIGHTS_FILE)  # for --init-weights: re-export, fine-tune
    if not dist.is_chief:
        log.info("worker %d of %d done; the chief (worker 0) exports", dist.worker_index,
                 dist.workers)
        return TrainingReport(None, 0, train_seconds, list(history.epoch), {})
    if dist.strategy is not tf.distribute.get_strategy():
        # Functions over distributed variables cannot be saved: export a plain copy.
        trained, model = model, task.build_model(config, data)
        model(inputs)
        model.set_weights(trained.get_weights())

    with staged_export(Path(config.export_base), config.name) as staged:
        task.export(config, model, data, staged.path)
        figures = task.evaluate(config, staged.path, data)
        staged.metadata = {
            Meta.TASK: task.name,
            Meta.CONTRACT_VERSION: CONTRACT_VERSION,
            "name": config.name,
            **task.metadata(config, data),
            "train_seconds": round(train_seconds, 1),
            "epochs_run": len(history.epoch),
            Meta.METRICS: figures,
            "config": dataclasses.asdict(config),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    assert staged.final_path is not None
    return TrainingReport(staged.final_path, directory_size(staged.final_path), train_seconds,
                          list(history.epoch), figures)
