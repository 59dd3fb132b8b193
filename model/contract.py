"""The export contract: everything that crosses the SavedModel boundary, declared once.

Exporters (in `model/`, run by `training/`) write exports that follow it; the server
(`serving/`) and the tests read them through it. Enough to write an export by hand:

    EXPORT_BASE/<model name>/<version>/   integer versions (TF Serving's layout); written
        saved_model.pb, variables/        into a hidden staging directory, then renamed
        recur.json                        the metadata below

`recur.json` keys (`Meta`):
    task              required: the model kind, e.g. "translate"; the server must have a
                      task of that name
    contract_version  the version of this contract the export follows; absent means 1
                      (exports written before the key existed)
    signature         name of the request-level function (default: the task's)
    labels            {str: str} shown by ListModels (corpus, languages, ...)
    metrics           {str: number} evaluation figures shown by ListModels
    <input name>      the default of a function input a request may leave unset, e.g.
                      "max_length": 79
    anything else     kept for people: the configuration, training time, ...

Functions (a task's `TaskContract` names them and their inputs):
  * the request-level function, saved as a SignatureDef under its own name and as
    `serving_default`, so any TF Serving client can call it. An input of rank 0 is an
    option shared by the whole batch; an input with a leading [batch] dimension has one
    entry per input. Outputs are keyed; those with a leading [batch] dimension are per
    input. `source_tokens` [batch] (input length in tokens) and `decode_steps` [] feed
    the server's padding and decode-step metrics when present.
  * decoders also save two tf.functions for step-level (continuous) batching, restored
    as attributes of the SavedModel (not signatures: they pass the search state, a nest
    of tensors):
        begin(<inputs of begin's contract>) -> (beams, source_tokens [batch])
        advance(beams, max_steps [] int32) -> (beams, outputs)
    `advance` steps every input `max_steps` times, or until all have ended (exports
    written before 2026-12-03 stop as soon as one ends; the server drives both);
    `outputs`: `ended` [batch] bool, `steps` [] int32, `decode_steps` [ended] int32
    (the step each ended on), the task's
    result keys [ended, ...] for the inputs that ended (in row order) and, for tasks
    that stream, `partial_texts` [batch]: each input's output so far that can no
    longer change. The server drops ended inputs before its next call. Rank-0 inputs
    of `begin` (the beam width) are shared by a running decode; rank-1 inputs are per
    input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

CONTRACT_VERSION = 1
"""The version exports written by this code follow (and the only one it reads)."""

METADATA_FILE = "recur.json"


class Meta:
    """Keys of `recur.json`."""

    TASK = "task"
    CONTRACT_VERSION = "contract_version"
    SIGNATURE = "signature"
    LABELS = "labels"
    METRICS = "metrics"
    XLA = "xla"  # true: decoding compiled with XLA, once per new shape (`DecoderExport`)
    BF16_PROJECTION = "bf16_projection"  # true: the output projection runs in bfloat16


XLA_BUCKET = 16
"""An XLA export pads its time axes (source, output buffer) to multiples of this: fewer
shapes to compile."""


# Outputs with a meaning for the server itself.
SOURCE_TOKENS = "source_tokens"  # [batch] int32, tokens of each input (padding metric)
DECODE_STEPS = "decode_steps"  # [] int32 (signature) or [ended] int32 (advance)
ENDED = "ended"  # advance: [batch] bool
STEPS = "steps"  # advance: [] int32, steps taken by this call
PARTIAL_TEXTS = "partial_texts"  # advance, streaming tasks: [batch] string
STEP_FUNCTIONS = ("begin", "advance")


class ContractError(ValueError):
    """An export that does not follow this contract; the message says what is wrong."""


@dataclass(frozen=True)
class FunctionContract:
    """A function of an export: its name, its inputs (names, dtypes, shapes) and the
    output keys it must return."""

    name: str
    inputs: tuple[tf.TensorSpec, ...]
    outputs: tuple[str, ...]

    @property
    def shared_inputs(self) -> tuple[str, ...]:
        """Inputs of rank 0: one value for the whole batch."""
        return tuple(spec.name for spec in self.inputs if spec.shape.rank == 0)

    def arguments(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, tf.Tensor]:
        """A batch's keyword arguments: each row maps every input name to its value;
        rank-0 inputs take the first row's (rows batched together agree on them)."""
        return {spec.name: tf.constant(rows[0][spec.name] if spec.shape.rank == 0
                                       else [row[spec.name] for row in rows], spec.dtype)
                for spec in self.inputs}

    def call(self, function, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Calls `function` (returning a dict) on a batch of rows; numpy outputs."""
        return {key: value.numpy() for key, value in function(**self.arguments(rows)).items()}

    def check_inputs(self, specs: Sequence[tf.TensorSpec], where: str) -> None:
        """Raises ContractError unless `specs` (an exported function's inputs) are this
        contract's, by name, dtype and rank."""
        found = {spec.name: spec for spec in specs}
        for spec in self.inputs:
            got = found.get(spec.name)
            if got is None:
                raise ContractError(f"{where} has no input {spec.name!r} (inputs: "
                                    f"{sorted(found)}); the contract wants {_describe(spec)}")
            if got.dtype != spec.dtype or got.shape.rank != spec.shape.rank:
                raise ContractError(f"{where} input {spec.name!r} is {_describe(got)}; the "
                                    f"contract wants {_describe(spec)}")


def _describe(spec: tf.TensorSpec) -> str:
    return f"{spec.dtype.name} of rank {spec.shape.rank}"


def per_input(outputs: Mapping[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    """A batch's outputs -> one dict per input, of the outputs with a [count] leading
    dimension."""
    keyed = {k: v for k, v in outputs.items() if v.ndim and v.shape[0] == count}
    return [{k: v[i] for k, v in keyed.items()} for i in range(count)]


@dataclass(frozen=True)
class TaskContract:
    """What an export of one task provides: its request-level signature and, for
    decoders that can be step-scheduled, the inputs of `begin`."""

    task: str
    signature: FunctionContract
    begin: FunctionContract | None = None

    def check(self, saved_model, signature_name: str = "") -> None:
        """Raises ContractError naming the first thing a loaded SavedModel lacks."""
        name = signature_name or self.signature.name
        if name not in saved_model.signatures:
            raise ContractError(f"the SavedModel has no signature {name!r} (it has "
                                f"{sorted(saved_model.signatures)})")
        signature = saved_model.signatures[name]
        self.signature.check_inputs(signature.structured_input_signature[1].values(),
                                    f"signature {name!r}")
        missing = set(self.signature.outputs) - set(signature.structured_outputs)
        if missing:
            raise ContractError(f"signature {name!r} lacks outputs {sorted(missing)}")
        if self.begin is not None and has_step_functions(saved_model):
            (begin,) = saved_model.begin.concrete_functions
            self.begin.check_inputs(begin.structured_input_signature[0], "function 'begin'")


def has_step_functions(saved_model) -> bool:
    """Exports written before step decoding existed lack `begin` and `advance`."""
    return all(hasattr(saved_model, name) for name in STEP_FUNCTIONS)


def check_version(metadata: Mapping[str, Any]) -> int:
    """The export's contract version; ContractError unless this code reads it."""
    version = metadata.get(Meta.CONTRACT_VERSION, 1)
    if version != CONTRACT_VERSION:
        raise ContractError(
            f"{METADATA_FILE} says contract_version {version!r}; this release reads version "
            f"{CONTRACT_VERSION} only: serve it with the recur release that wrote it, or "
            "re-export the model with this one")
    return version


# ------------------------------------------------------------------ the tasks' contracts
# Decode options, shared by every decoder: a request may set them (serving validates
# them), the search reads them. Per input in `begin`, per batch in signatures.
TEXTS = tf.TensorSpec([None], tf.string, name="texts")
BEAM_WIDTH = tf.TensorSpec([], tf.int32, name="beam_width")
NUM_HYPOTHESES = tf.TensorSpec([], tf.int32, name="num_hypotheses")
LENGTH_PENALTY = tf.TensorSpec([], tf.float32, name="length_penalty")
MAX_LENGTH = tf.TensorSpec([], tf.int32, name="max_length")
MAX_LENGTH_RATIO = tf.TensorSpec([], tf.float32, name="max_length_ratio")
# Sampling options (`model/sampling.py`): temperature 0 means decode by score.
TEMPERATURE = tf.TensorSpec([], tf.float32, name="temperature")
TOP_K = tf.TensorSpec([], tf.int32, name="top_k")
TOP_P = tf.TensorSpec([], tf.float32, name="top_p")
SEED = tf.TensorSpec([], tf.int64, name="seed")
BY_SCORE = {TEMPERATURE.name: 0.0, TOP_K.name: 0, TOP_P.name: 1.0, SEED.name: 0}
"""Sampling options that mean "decode by score" (beam search; greedy at width 1)."""

NBEST = ("texts", "scores", "log_probs", "num_tokens")
"""Each [batch, n]: detokenised text, ranking score, log-probability (EOS included) and
length in tokens (EOS excluded) of each hypothesis, best first."""


def each_input(spec: tf.TensorSpec) -> tf.TensorSpec:
    """The per-input ([batch]) form of an option."""
    return tf.TensorSpec([None, *spec.shape], spec.dtype, name=spec.name)


TRANSLATE = TaskContract(
    task="translate",
    signature=FunctionContract(
        "translate",
        inputs=(TEXTS, BEAM_WIDTH, NUM_HYPOTHESES, LENGTH_PENALTY, MAX_LENGTH, MAX_LENGTH_RATIO),
        outputs=(*NBEST, SOURCE_TOKENS, DECODE_STEPS)),
    begin=FunctionContract(
        "begin",
        inputs=(TEXTS, BEAM_WIDTH, each_input(LENGTH_PENALTY), each_input(MAX_LENGTH),
                each_input(MAX_LENGTH_RATIO)),
        outputs=NBEST),
)
"""Translation: `texts` [batch] raw source sentences in, n-best translations out. An
output has at most `max_length` tokens and, when `max_length_ratio` > 0, at most
ceil(ratio x source tokens) + 10."""

PRETOKENIZED = tf.TensorSpec([], tf.bool, name="pretokenized")
TAGGED = ("tokens", "tags", "probabilities")
"""Each [batch, time], padded with "" or 0 after the input's `source_tokens`: the tokens,
their most probable tags and those tags' probabilities."""

TAG = TaskContract(
    task="tag",
    signature=FunctionContract("tag", inputs=(TEXTS, PRETOKENIZED),
                               outputs=(*TAGGED, SOURCE_TOKENS)),
)
"""Tagging: `texts` [batch] in, each raw text (tokenised by the rule of `model/words.py`)
or, when `pretokenized`, the client's tokens joined by U+001F; one tag per token out.
recur.json's `tagset` names the tag set ("universal", "brown", or a user file's)."""

GENERATION_OPTIONS = (MAX_LENGTH, TEMPERATURE, TOP_K, TOP_P, SEED)
GENERATE = TaskContract(
    task="charlm",
    signature=FunctionContract(
        "generate", inputs=(TEXTS, BEAM_WIDTH, NUM_HYPOTHESES, *GENERATION_OPTIONS),
        outputs=(*NBEST, SOURCE_TOKENS, DECODE_STEPS)),
    begin=FunctionContract(
        "begin", inputs=(TEXTS, BEAM_WIDTH, *map(each_input, GENERATION_OPTIONS)),
        outputs=NBEST),
)
"""Character-level generation: `texts` [batch] prompts (empty: from the beginning of a
text) in, continuations of exactly `max_length` characters out (the model has no end of
text), sampled (temperature > 0, with top_k, top_p and seed) or by beam search
(temperature 0); `num_tokens` counts characters. `source_tokens` is each prompt's length
in characters."""

SCORED = ("log_probs", "bits_per_char", "num_chars")
SCORE = FunctionContract("score", inputs=(TEXTS,), outputs=SCORED)
"""The char LM's second signature: `texts` [batch] -> each text's log-probability (natural
log, every character predicted from those before it, the first from the beginning of a
text), its bits per character, and its length in characters."""

IMAGES = tf.TensorSpec([None], tf.string, name="images")
IMAGE_SIZE = "image_size"  # recur.json: the side of the square a captioner sees
CAPTION = TaskContract(
    task="caption",
    signature=FunctionContract(
        "caption", inputs=(IMAGES, BEAM_WIDTH, NUM_HYPOTHESES, LENGTH_PENALTY, MAX_LENGTH),
        outputs=(*NBEST, SOURCE_TOKENS, DECODE_STEPS)),
    begin=FunctionContract(
        "begin", inputs=(IMAGES, BEAM_WIDTH, each_input(LENGTH_PENALTY), each_input(MAX_LENGTH)),
        outputs=NBEST),
)
"""Captioning: `images` [batch] encoded images (PNG, JPEG, GIF; decoded, made RGB and
scaled in the graph, see `model/images.py`) in, n-best captions out. `source_tokens` is
the number of feature-map positions each caption's attention reads (never padding).
recur.json's `image_size` (`IMAGE_SIZE`) is the side of the square the model sees."""
