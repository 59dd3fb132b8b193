"""What decoder tasks share on the serving side: checking texts, decode and sampling
options, and turning n-best outputs into `NBest` messages."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from google.protobuf.message import Message

from model.contract import (
    BEAM_WIDTH,
    LENGTH_PENALTY,
    MAX_LENGTH,
    NBEST,
    NUM_HYPOTHESES,
    SEED,
    TEMPERATURE,
    TOP_K,
    TOP_P,
)
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.errors import invalid
from serving.task import Outputs

MAX_TEMPERATURE = 10.0
MAX_TOP_K = 100_000


def check_texts(texts: Sequence[str], limits: LimitsConfig, field: str = "texts") -> list[str]:
    """1..max_batch_entries non-blank texts of at most max_text_bytes each."""
    if not texts:
        raise invalid(f"{field} is empty: send at least one text")
    if len(texts) > limits.max_batch_entries:
        raise invalid(f"{field} has {len(texts)} entries; the limit is "
                      f"{limits.max_batch_entries}: split the request")
    for i, text in enumerate(texts):
        if not text.strip():
            raise invalid(f"{field}[{i}] is empty")
        check_size(text, limits, f"{field}[{i}]")
    return list(texts)


def check_size(text: str, limits: LimitsConfig, field: str) -> None:
    size = len(text.encode("utf-8"))
    if size > limits.max_text_bytes:
        raise invalid(f"{field} is {size} bytes; the limit is {limits.max_text_bytes}")


def decode_options(options: recur_pb2.DecodeOptions, metadata: dict,
                   limits: LimitsConfig) -> dict[str, int | float]:
    """DecodeOptions -> beam_width, num_hypotheses, length_penalty, max_length, with unset
    ones taken from the server's defaults (the model's for max_length) and every set one
    checked against its range."""
    beam = options.beam_width if options.HasField("beam_width") else limits.default_beam_width
    if not 1 <= beam <= limits.max_beam_width:
        raise invalid(f"options.beam_width must be in 1..{limits.max_beam_width}, got {beam}")
    n = options.num_hypotheses if options.HasField("num_hypotheses") else 1
    if not 1 <= n <= beam:
        raise invalid(f"options.num_hypotheses must be in 1..beam_width ({beam}), got {n}")
    alpha = (options.length_penalty if options.HasField("length_penalty")
             else limits.default_length_penalty)
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 2.0):
        raise invalid(f"options.length_penalty must be in 0..2, got {alpha}")
    model_max = min(int(metadata.get(MAX_LENGTH.name, limits.max_output_length)),
                    limits.max_output_length)
    max_length = options.max_length if options.HasField("max_length") else model_max
    if not 1 <= max_length <= limits.max_output_length:
        raise invalid(f"options.max_length must be in 1..{limits.max_output_length}, "
                      f"got {max_length}")
    # Rounded, so that near-equal floats share a request-level batch.
    return {BEAM_WIDTH.name: beam, NUM_HYPOTHESES.name: n,
            LENGTH_PENALTY.name: round(float(alpha), 4), MAX_LENGTH.name: max_length}


def sampling_options(request: Message, limits: LimitsConfig) -> dict[str, int | float]:
    """A request's temperature, top_k, top_p and seed (fields of those names); unset:
    temperature 1, no top-k or top-p cut, a fresh random seed. Each set one is checked."""
    temperature = request.temperature if request.HasField("temperature") else 1.0
    if not (math.isfinite(temperature) and 0.0 < temperature <= MAX_TEMPERATURE):
        raise invalid(f"temperature must be in (0, {MAX_TEMPERATURE:g}], got {temperature}")
    top_k = request.top_k if request.HasField("top_k") else 0
    if not 0 <= top_k <= MAX_TOP_K:
        raise invalid(f"top_k must be in 0..{MAX_TOP_K} (0 = no limit), got {top_k}")
    top_p = request.top_p if request.HasField("top_p") else 1.0
    if not (math.isfinite(top_p) and 0.0 < top_p <= 1.0):
        raise invalid(f"top_p must be in (0, 1], got {top_p}")
    seed = request.seed if request.HasField("seed") else random.getrandbits(63)
    return {TEMPERATURE.name: round(float(temperature), 4), TOP_K.name: top_k,
            TOP_P.name: round(float(top_p), 4), SEED.name: seed}


def nbest(outputs: Outputs, count: int) -> recur_pb2.NBest:
    """One input's n-best outputs (`NBEST` keys, [n] each) -> its best `count` hypotheses."""
    texts, scores, log_probs, lengths = (outputs[key] for key in NBEST)
    return recur_pb2.NBest(hypotheses=[
        recur_pb2.Hypothesis(text=texts[j].decode("utf-8"), score=float(scores[j]),
                             log_prob=float(log_probs[j]), num_tokens=int(lengths[j]))
        for j in range(min(count, len(texts)))])


def tokens_in(results: Sequence[recur_pb2.NBest]) -> int:
    """Output tokens in n-best lists (the generated-tokens metric)."""
    return sum(h.num_tokens for nbest_ in results for h in nbest_.hypotheses)


def generated(results: Sequence[Outputs], version: int) -> tuple[recur_pb2.GenerateResponse,
                                                                  int]:
    """A Generate request's one input's best output -> the response and its length."""
    (outputs,) = results
    return (recur_pb2.GenerateResponse(text=outputs["texts"][0].decode("utf-8"),
                                       log_prob=float(outputs["log_probs"][0]),
                                       model_version=version),
            int(outputs["num_tokens"][0]))
