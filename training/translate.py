"""The translation task: corpus -> SentencePiece -> Seq2Seq -> fit -> export -> BLEU.

A run directory (`RUN_DIR/NAME/`) holds what an interrupted run needs to resume:
the SentencePiece model and Keras' epoch backup; TensorBoard logs go there too.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from model.export import directory_size, staged_export
from model.losses import SmoothedCrossEntropy
from model.seq2seq import Seq2Seq
from model.tokenizer import SubwordTokenizer, TokenizerConfig, train_sentencepiece
from model.translator import Translator
from serving.runners import DecodeKey, translate_batch
from training.config import TranslateConfig
from training.corpora import Splits, load_bible_pairs, read_parallel_tsv, split_fraction
from training.evaluate import bleu_chrf, translate_all
from training.pipeline import translation_batches
from training.progress import ProgressLog

log = logging.getLogger(__name__)


@dataclass
class TrainingReport:
    export_path: Path
    export_bytes: int
    train_seconds: float
    epochs_run: list[int]
    metrics: dict[str, float]


def load_pairs(config: TranslateConfig) -> Splits:
    if config.train_file:
        pairs = read_parallel_tsv(Path(config.train_file))
        if config.dev_file:
            return Splits(pairs, read_parallel_tsv(Path(config.dev_file)), [])
        return split_fraction(pairs, dev=0.1, test=0.1, seed=config.seed)
    return load_bible_pairs(config.source, config.target)


def _subset(items: list, limit: int, seed: int) -> list:
    if not limit or limit >= len(items):
        return items
    return random.Random(seed).sample(items, limit)


def build_model(config: TranslateConfig, vocab_size: int) -> Seq2Seq:
    model = Seq2Seq(vocab_size, config.embedding_dim, config.units, config.cell, config.dropout,
                    config.encoder_layers)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clip_norm),
        loss=SmoothedCrossEntropy(config.label_smoothing),
        jit_compile=config.jit_compile,
    )
    return model


def load_or_train_tokenizer(config: TranslateConfig, train: list[tuple[str, str]],
                            run_dir: Path) -> SubwordTokenizer:
    """Reuses the run directory's SentencePiece model, so a resumed run keeps its vocabulary."""
    path = run_dir / "sentencepiece.model"
    if path.exists():
        log.info("reusing %s (delete it, or use a new --run-dir, to train a new one)", path)
        return SubwordTokenizer(path.read_bytes())
    proto = train_sentencepiece([text for pair in train for text in pair],
                                TokenizerConfig(vocab_size=config.vocab_size))
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto)
    return SubwordTokenizer(proto)


def evaluate_export(path: Path, config: TranslateConfig,
                    splits: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    """BLEU and chrF per split, greedy and beam search, through the exported signature
    called exactly as the server calls it."""
    signature = tf.saved_model.load(str(path)).signatures["translate"]
    metrics: dict[str, float] = {}
    for decoder, beam in (("greedy", 1), (f"beam{config.eval_beam_width}",
                                          config.eval_beam_width)):
        key = DecodeKey(beam, 1, config.eval_length_penalty, config.max_target_tokens - 1,
                        config.max_length_ratio)

        def translate(sources: list[str], key: DecodeKey = key) -> list[str]:
            return [nbest[0].text for nbest in translate_batch(signature, key, sources)]

        for split, pairs in splits.items():
            if not pairs:
                continue
            hypotheses = translate_all(translate, [s for s, _ in pairs],
                                       desc=f"{split} {decoder}")
            for key, value in bleu_chrf(hypotheses, [t for _, t in pairs]).items():
                metrics[f"{split}_{key}_{decoder}"] = value
            if decoder == "greedy" and split == "dev":
                for (source, reference), hypothesis in zip(pairs[:3], hypotheses[:3],
                                                           strict=True):
                    log.info("dev sample: %s\n    -> %s\n    (reference: %s)", source,
                             hypothesis, reference)
        log.info("%s: %s", decoder, {k: v for k, v in metrics.items() if k.endswith(decoder)})
    return metrics


def train_translation(config: TranslateConfig,
                      extra_callbacks: tuple[keras.callbacks.Callback, ...] = ()
                      ) -> TrainingReport:
    """Trains, exports and evaluates; `extra_callbacks` go to Keras' fit after ours."""
    previous = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train_translation(config, extra_callbacks)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train_translation(config: TranslateConfig,
                       extra_callbacks: tuple[keras.callbacks.Callback, ...]) -> TrainingReport:
    keras.utils.set_random_seed(config.seed)
    splits = load_pairs(config)
    train = _subset(splits.train, config.max_train_examples, config.seed)
    held_out = {"dev": _subset(splits.dev, config.max_eval_examples, config.seed),
                "test": _subset(splits.test, config.max_eval_examples, config.seed)}
    log.info("training on %d pairs; evaluating on %d dev and %d test pairs", len(train),
             len(held_out["dev"]), len(held_out["test"]))

    run_dir = Path(config.run_dir) / config.name
    tokenizer = load_or_train_tokenizer(config, train, run_dir)
    batches = dict(batch_size=config.batch_size, max_source_tokens=config.max_source_tokens,
                   max_target_tokens=config.max_target_tokens)
    train_ds = translation_batches(train, tokenizer, shuffle_seed=config.seed, **batches)
    dev_ds = translation_batches(held_out["dev"], tokenizer, **batches)

    model = build_model(config, tokenizer.vocab_size)
    for inputs, _ in train_ds.take(1):
        model(inputs)  # build the weights, so BackupAndRestore can restore into them
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),  # resume if interrupted
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=50),
    ]
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            patience=config.patience, restore_best_weights=True, verbose=1))
    interactive = sys.stderr.isatty()
    if not interactive:
        callbacks.append(ProgressLog())
    started = time.monotonic()
    with warnings.catch_warnings():
        # tf.data with length buckets has no known size; Keras warns at each epoch's end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(train_ds, validation_data=dev_ds, epochs=config.epochs,
                            shuffle=False, callbacks=[*callbacks, *extra_callbacks],
                            verbose=1 if interactive else 0)
    train_seconds = time.monotonic() - started

    translator = Translator(model, tokenizer, config.max_source_tokens)
    with staged_export(Path(config.export_base), config.name) as staged:
        translator.save(staged.path)
        metrics = evaluate_export(staged.path, config, held_out)
        staged.metadata = {
            "task": "translate",
            "signature": "translate",
            "name": config.name,
            "source_language": config.source,
            "target_language": config.target,
            "max_length": config.max_target_tokens - 1,
            "max_length_ratio": config.max_length_ratio,
            "vocab_size": tokenizer.vocab_size,
            "train_pairs": len(train),
            "train_seconds": round(train_seconds, 1),
            "epochs_run": len(history.epoch),
            "metrics": metrics,
            "eval": {"beam_width": config.eval_beam_width,
                     "length_penalty": config.eval_length_penalty},
            "config": dataclasses.asdict(config),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    assert staged.final_path is not None
    return TrainingReport(staged.final_path, directory_size(staged.final_path), train_seconds,
                          list(history.epoch), metrics)
