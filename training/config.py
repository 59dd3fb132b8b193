"""The training loop's settings, shared by every task (see training.driver).

A task's configuration is a frozen dataclass that inherits this one and its model's
hyperparameter config (e.g. `model.seq2seq.Seq2SeqConfig`) and adds its data and
evaluation fields; every field is one `python -m training.run TASK` flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import option

STRATEGIES = ("default", "mirrored", "multiworker")  # built by training.distribute


@dataclass(frozen=True)
class TrainingConfig:
    model_name: str = option("", "export name under --export-base; empty = the task's "
                                 "default")
    max_train_examples: int = option(0, "train on at most this many examples, 0 = all")
    max_eval_examples: int = option(0, "evaluate on at most this many dev (and test) "
                                       "examples, 0 = all")
    batch_size: int = option(64, "examples per training step")
    epochs: int = option(10, "passes over the training data")
    learning_rate: float = option(1e-3, "Adam learning rate")
    clip_norm: float = option(1.0, "gradient clipping by global norm")
    decay_factor: float = option(0.0, "multiply the learning rate by this when the dev "
                                      "figure has not improved for --decay-patience epochs "
                                      "(0 = constant learning rate)")
    decay_patience: int = option(1, "epochs without a better dev figure before the "
                                    "learning rate decays")
    cosine_decay: bool = option(False, "anneal the learning rate to 0 along a half cosine "
                                       "over the run: its --epochs, or its --time-budget "
                                       "if that ends first (not with --decay-factor)")
    time_budget: float = option(0.0, "stop training after this many minutes (0 = no limit), "
                                      "e.g. to compare models at equal training time")
    patience: int = option(3, "stop after this many epochs without a better dev figure and "
                              "keep the best weights (0 = never stop early)")
    export_base: str = option("exports", "where the SavedModel goes: "
                                         "EXPORT_BASE/NAME/VERSION/")
    run_dir: str = option("runs", "RUN_DIR/NAME/ keeps TensorBoard logs, the vocabulary and "
                                  "the epoch backup a rerun resumes from")
    init_weights: str = option("", "start from these weights (RUN_DIR/NAME/model.weights.h5 "
                                   "of an earlier run of the same configuration) and the "
                                   "optimizer state saved with them, its learning rate "
                                   "included (--learning-rate is then unused); with "
                                   "--epochs 0 the run only exports and evaluates them")
    seed: int = option(1234, "random seed for shuffling and initialisation")
    mixed_precision: bool = option(False, "train in mixed_float16 (for GPUs with tensor "
                                          "cores)")
    jit_compile: bool = option(False, "compile the training step with XLA")
    strategy: str = option("default", "tf.distribute strategy: default (one device), "
                                      "mirrored (every local GPU), multiworker (several "
                                      "machines: TF_CONFIG, or --workers)")
    workers: str = option("", "with --strategy multiworker: every worker's HOST:PORT, "
                              "comma-separated, the same on all; worker 0 is the chief "
                              "and alone exports")
    worker_index: int = option(-1, "this worker's place in --workers (-1 = "
                                   "$JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job "
                                   "sets it)")

    def __post_init__(self) -> None:
        if self.cosine_decay and self.decay_factor:
            raise ValueError("--cosine-decay and --decay-factor both set the learning rate: "
                             "choose one (--decay-factor 0 turns a profile's decay off)")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.strategy == "multiworker" and self.time_budget:
            raise ValueError("--time-budget with --strategy multiworker: workers' clocks "
                             "would stop them at different steps; use --epochs")

    @property
    def name(self) -> str:
        """The export's model name."""
        return self.model_name or self.default_name()

    def default_name(self) -> str:
        raise NotImplementedError
