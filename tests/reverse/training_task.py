"""The reverse task's training side: random strings and their reversals, the shared
driver's loop, exact-match accuracy through the export."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import tensorflow as tf

from model.config import option
from model.contract import BY_SCORE, MAX_LENGTH, TEXTS, Meta
from model.seq2seq import Seq2Seq, Seq2SeqConfig
from tests.reverse.contract import ALPHABET, MAX_CHARS, REVERSE
from tests.reverse.export import CharTokenizer, Reverser
from training.config import TrainingConfig
from training.driver import Prepared, TrainingTask
from training.pipeline import translation_batches


def random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7)))
            for _ in range(count)]


@dataclass(frozen=True)
class ReverseConfig(TrainingConfig, Seq2SeqConfig):
    """Reverse strings of a few letters."""

    examples: int = option(3000, "training strings (dev: a tenth as many)")

    def default_name(self) -> str:
        return "reverse"


@dataclass
class ReverseData(Prepared):
    tokenizer: CharTokenizer
    dev_strings: list[str]


class ReverseTask(TrainingTask):
    name = REVERSE.task
    description = "reverse a string (a task of the tests)"
    config = ReverseConfig
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}}

    def prepare(self, config: ReverseConfig, run_dir: Path) -> ReverseData:
        tokenizer = CharTokenizer(ALPHABET)
        train = random_strings(config.examples, config.seed)
        dev = random_strings(config.examples // 10, config.seed + 1)
        batches = dict(batch_size=config.batch_size, max_source_tokens=MAX_CHARS,
                       max_target_tokens=MAX_CHARS)
        return ReverseData(
            train=translation_batches([(s, s[::-1]) for s in train], tokenizer,
                                      shuffle_seed=config.seed, **batches),
            dev=translation_batches([(s, s[::-1]) for s in dev], tokenizer, **batches),
            tokenizer=tokenizer, dev_strings=dev)

    def build_model(self, config: ReverseConfig, data: ReverseData) -> keras.Model:
        return Seq2Seq.from_hyperparameters(data.tokenizer.vocab_size, config)

    def loss(self, config: ReverseConfig) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)

    def export(self, config: ReverseConfig, model: keras.Model, data: ReverseData,
               path: Path) -> None:
        Reverser(model, data.tokenizer).save(path)

    def evaluate(self, config: ReverseConfig, path: Path, data: ReverseData) -> dict[str, float]:
        signature = tf.saved_model.load(str(path)).signatures[REVERSE.signature.name]
        options = dict(beam_width=1, num_hypotheses=1, length_penalty=0.0,
                       max_length=MAX_CHARS, **BY_SCORE)
        out = REVERSE.signature.call(signature,
                                     [{**options, TEXTS.name: s} for s in data.dev_strings])
        outputs = [t.decode() for t in out["texts"][:, 0]]
        exact = sum(o == s[::-1] for o, s in zip(outputs, data.dev_strings, strict=True))
        return {"dev_exact_match": round(exact / len(outputs), 4)}

    def metadata(self, config: ReverseConfig, data: ReverseData) -> dict[str, Any]:
        return {Meta.SIGNATURE: REVERSE.signature.name, Meta.LABELS: {"alphabet": ALPHABET},
                MAX_LENGTH.name: MAX_CHARS}


TASK = ReverseTask()
