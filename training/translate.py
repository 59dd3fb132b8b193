"""The translation task: corpus -> SentencePiece -> Seq2Seq -> fit -> export -> dev BLEU."""

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
from model.seq2seq import Seq2Seq
from model.tokenizer import SubwordTokenizer, TokenizerConfig, train_sentencepiece
from model.translator import TRANSLATE_SIGNATURE, Translator
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
    metrics: dict[str, float]


def load_pairs(config: TranslateConfig) -> Splits:
    if config.train_file:
        pairs = read_parallel_tsv(Path(config.train_file))
        if config.dev_file:
            return Splits(pairs, read_parallel_tsv(Path(config.dev_file)), [])
        return split_fraction(pairs, dev=0.1, test=0.0, seed=config.seed)
    return load_bible_pairs(config.source, config.target)


def _subset(items: list, limit: int, seed: int) -> list:
    if not limit or limit >= len(items):
        return items
    return random.Random(seed).sample(items, limit)


def build_model(config: TranslateConfig, vocab_size: int) -> Seq2Seq:
    model = Seq2Seq(vocab_size, config.embedding_dim, config.units, config.cell, config.dropout)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clip_norm),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        jit_compile=config.jit_compile,
    )
    return model


def export_translator(translator: Translator, path: Path) -> None:
    """Saves the translator with its `translate` signature (also `serving_default`)."""
    fn = translator.translate.get_concrete_function(*TRANSLATE_SIGNATURE)
    tf.saved_model.save(translator, str(path),
                        signatures={"translate": fn, "serving_default": fn})


def saved_translate_fn(path: Path, beam_width: int, length_penalty: float, max_length: int):
    """The exported signature as a `TranslateFn`: what the server will run."""
    signature = tf.saved_model.load(str(path)).signatures["translate"]

    def translate(sources: list[str]) -> list[str]:
        out = signature(texts=tf.constant(sources), beam_width=tf.constant(beam_width),
                        num_hypotheses=tf.constant(1),
                        length_penalty=tf.constant(length_penalty, tf.float32),
                        max_length=tf.constant(max_length))
        return [t.decode("utf-8") for t in out["texts"].numpy()[:, 0]]

    return translate


def train_translation(config: TranslateConfig) -> TrainingReport:
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    splits = load_pairs(config)
    train = _subset(splits.train, config.max_train_examples, config.seed)
    dev = _subset(splits.dev, config.max_dev_examples, config.seed)
    log.info("training on %d pairs, evaluating on %d dev pairs", len(train), len(dev))

    tokenizer = SubwordTokenizer(train_sentencepiece(
        [text for pair in train for text in pair], TokenizerConfig(vocab_size=config.vocab_size)))
    batches = dict(batch_size=config.batch_size, max_source_tokens=config.max_source_tokens,
                   max_target_tokens=config.max_target_tokens)
    train_ds = translation_batches(train, tokenizer, shuffle_seed=config.seed, **batches)
    dev_ds = translation_batches(dev, tokenizer, **batches)

    model = build_model(config, tokenizer.vocab_size)
    run_dir = Path(config.run_dir) / config.name
    started = time.monotonic()
    interactive = sys.stderr.isatty()
    with warnings.catch_warnings():
        # tf.data with length buckets has no known size; Keras warns at each epoch's end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(train_ds, validation_data=dev_ds, epochs=config.epochs, shuffle=False,
                  callbacks=[keras.callbacks.TensorBoard(str(run_dir), update_freq=50),
                             *([] if interactive else [ProgressLog()])],
                  verbose=1 if interactive else 0)
    train_seconds = time.monotonic() - started

    translator = Translator(model, tokenizer, config.max_source_tokens)
    with staged_export(Path(config.export_base), config.name) as staged:
        export_translator(translator, staged.path)
        translate = saved_translate_fn(staged.path, config.eval_beam_width,
                                       config.eval_length_penalty, config.max_target_tokens - 1)
        hypotheses = translate_all(translate, [s for s, _ in dev], desc="dev BLEU")
        scores = bleu_chrf(hypotheses, [t for _, t in dev])
        metrics = {f"dev_{k}": v for k, v in scores.items()}
        metrics["dev_sentences"] = len(dev)
        for source, hypothesis in list(zip(dev, hypotheses, strict=True))[:3]:
            log.info("dev sample: %s\n    -> %s\n    (reference: %s)", source[0], hypothesis,
                     source[1])
        staged.metadata = {
            "task": "translate",
            "signature": "translate",
            "name": config.name,
            "source_language": config.source,
            "target_language": config.target,
            "max_length": config.max_target_tokens - 1,
            "vocab_size": tokenizer.vocab_size,
            "train_pairs": len(train),
            "train_seconds": round(train_seconds, 1),
            "metrics": metrics,
            "eval": {"beam_width": config.eval_beam_width,
                     "length_penalty": config.eval_length_penalty},
            "config": dataclasses.asdict(config),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    assert staged.final_path is not None
    return TrainingReport(staged.final_path, directory_size(staged.final_path), train_seconds,
                          metrics)

