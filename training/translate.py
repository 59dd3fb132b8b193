"""The translation task: Bible (or your) sentence pairs -> SentencePiece -> Seq2Seq ->
the `translate` export, evaluated with BLEU and chrF on held-out books.

The run directory (`RUN_DIR/NAME/`) keeps the SentencePiece model, so that a resumed
run keeps its vocabulary.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import tensorflow as tf

from model.config import option
from model.contract import MAX_LENGTH, MAX_LENGTH_RATIO, TEXTS, TRANSLATE, XLA_BUCKET, Meta
from model.losses import SmoothedCrossEntropy
from model.seq2seq import Seq2Seq, Seq2SeqConfig
from model.tokenizer import SubwordTokenizer
from model.translator import Translator
from training.config import TrainingConfig
from training.corpora import Splits, load_bible_pairs, read_parallel_tsv, split_fraction
from training.driver import Prepared, TrainingTask
from training.evaluate import best_outputs, bleu_chrf, decoders
from training.pipeline import translation_batches
from training.subwords import load_or_train_tokenizer

log = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class TranslateConfig(TrainingConfig, Seq2SeqConfig):
    """Encoder-decoder translation on the Bible (or your own parallel TSV files)."""

    source: str = option("en", "source language: en, fr, es, de, it, pt, en-kjv, en-bbe "
                               "(see DATA.md)")
    target: str = option("fr", "target language (same codes as --source)")
    train_file: str = option("", "your own training pairs, source<TAB>target per line; "
                                 "empty = the Bible corpus")
    dev_file: str = option("", "your own dev pairs; empty = 10%% of --train-file (and 10%% "
                               "for test), or the Bible's held-out dev and test books")
    vocab_size: int = option(8000, "SentencePiece vocabulary, shared by both languages")
    label_smoothing: float = option(0.1, "share of each target's probability spread over "
                                         "the vocabulary")
    max_source_tokens: int = option(64, "source subwords kept per sentence (EOS included)")
    max_target_tokens: int = option(80, "target subwords kept per sentence (EOS included)")
    max_length_ratio: float = option(2.0, "outputs may have ratio x source subwords + 10 "
                                          "(0 = no relative limit); exported as the default")
    eval_beam_width: int = option(4, "beam width of the final BLEU (greedy is measured too)")
    eval_length_penalty: float = option(0.6, "GNMT length penalty alpha of the final BLEU")
    xla_decode: bool = option(False, "export the encoder and the decoding loop compiled with "
                                     "XLA: faster at small batches, but each new batch "
                                     f"size, beam width and {XLA_BUCKET}-token bucket of "
                                     "source or output length compiles once (about a "
                                     "second on a CPU): serve it with the server's "
                                     "--scheduling request and steady traffic")
    bf16_projection: bool = option(False, "export the output projection (the largest product "
                                          "of a decoding step) in bfloat16: faster on CPUs "
                                          "with AMX and on GPUs with bfloat16 units, maybe "
                                          "slower elsewhere; changes some outputs (the "
                                          "README's Decoding speed measures both)")

    def default_name(self) -> str:
        return f"translate-{self.source}-{self.target}"


@dataclass
class TranslationData(Prepared):
    tokenizer: SubwordTokenizer
    train_pairs: int
    held_out: dict[str, Pairs]  # "dev", "test" -> pairs


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


class TranslateTask(TrainingTask):
    name = TRANSLATE.task
    description = "encoder-decoder translation with attention (default: Bible en->fr)"
    config = TranslateConfig
    # `quick` trains in minutes on 2 CPU cores for demos, `full` trains the real model to
    # convergence (hours on a CPU, far less on a GPU): its epoch cap is a safety net, early
    # stopping on the dev loss ends it, the learning rate halved at each stall before that.
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(vocab_size=4000, embedding_dim=128, units=256, max_source_tokens=48,
                      max_target_tokens=64, batch_size=64, epochs=3, learning_rate=2e-3),
        "full": dict(dropout=0.3, epochs=60, decay_factor=0.5, decay_patience=1),
    }

    def prepare(self, config: TranslateConfig, run_dir: Path) -> TranslationData:
        splits = load_pairs(config)
        train = _subset(splits.train, config.max_train_examples, config.seed)
        held_out = {"dev": _subset(splits.dev, config.max_eval_examples, config.seed),
                    "test": _subset(splits.test, config.max_eval_examples, config.seed)}
        log.info("training on %d pairs; evaluating on %d dev and %d test pairs", len(train),
                 len(held_out["dev"]), len(held_out["test"]))
        tokenizer = load_or_train_tokenizer(run_dir, (text for pair in train for text in pair),
                                            config.vocab_size)
        batches = dict(batch_size=config.batch_size, max_source_tokens=config.max_source_tokens,
                       max_target_tokens=config.max_target_tokens)
        return TranslationData(
            train=translation_batches(train, tokenizer, shuffle_seed=config.seed, **batches),
            dev=translation_batches(held_out["dev"], tokenizer, **batches),
            tokenizer=tokenizer, train_pairs=len(train), held_out=held_out)

    def build_model(self, config: TranslateConfig, data: TranslationData) -> keras.Model:
        return Seq2Seq.from_hyperparameters(data.tokenizer.vocab_size, config)

    def loss(self, config: TranslateConfig) -> keras.losses.Loss:
        return SmoothedCrossEntropy(config.label_smoothing)

    def export(self, config: TranslateConfig, model: keras.Model, data: TranslationData,
               path: Path) -> None:
        Translator(model, data.tokenizer, config.max_source_tokens, xla=config.xla_decode,
                   bf16_projection=config.bf16_projection).save(path)

    def evaluate(self, config: TranslateConfig, path: Path,
                 data: TranslationData) -> dict[str, float]:
        """BLEU and chrF per split, greedy and beam search, through the exported signature
        called exactly as the server calls it."""
        signature = tf.saved_model.load(str(path)).signatures[TRANSLATE.signature.name]
        figures: dict[str, float] = {}
        for decoder, width in decoders(config.eval_beam_width):
            options = dict(beam_width=width, num_hypotheses=1,
                           length_penalty=config.eval_length_penalty,
                           max_length=config.max_target_tokens - 1,
                           max_length_ratio=config.max_length_ratio)
            for split, pairs in data.held_out.items():
                if not pairs:
                    continue
                hypotheses = best_outputs(signature, TRANSLATE.signature, TEXTS.name,
                                          [s for s, _ in pairs], options, f"{split} {decoder}")
                for key, value in bleu_chrf(hypotheses, [t for _, t in pairs]).items():
                    figures[f"{split}_{key}_{decoder}"] = value
                if decoder == "greedy" and split == "dev":
                    for (source, reference), hypothesis in zip(pairs[:3], hypotheses[:3],
                                                               strict=True):
                        log.info("dev sample: %s\n    -> %s\n    (reference: %s)", source,
                                 hypothesis, reference)
            log.info("%s: %s", decoder,
                     {k: v for k, v in figures.items() if k.endswith(decoder)})
        return figures

    def metadata(self, config: TranslateConfig, data: TranslationData) -> dict[str, Any]:
        return {
            Meta.SIGNATURE: TRANSLATE.signature.name,
            Meta.XLA: config.xla_decode,
            Meta.BF16_PROJECTION: config.bf16_projection,
            "source_language": config.source,
            "target_language": config.target,
            MAX_LENGTH.name: config.max_target_tokens - 1,
            MAX_LENGTH_RATIO.name: config.max_length_ratio,
            "vocab_size": data.tokenizer.vocab_size,
            "train_pairs": data.train_pairs,
            "eval": {"beam_width": config.eval_beam_width,
                     "length_penalty": config.eval_length_penalty},
        }


TASK = TranslateTask()
