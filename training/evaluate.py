"""Evaluation helpers: running an export over held-out inputs in batches, a decoder's
best outputs through its signature, corpus BLEU and chrF (sacrebleu)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import sacrebleu
from tqdm import tqdm

from model.contract import FunctionContract

T = TypeVar("T")
R = TypeVar("R")


def in_length_order(run: Callable[[list[T]], list[R]], inputs: Sequence[T],
                    batch_size: int = 64, desc: str = "evaluating") -> list[R]:
    """`run` (a batch of inputs -> one output each, e.g. an export's signature) over all
    `inputs` in batches of similar length (less padding); outputs in the original order."""
    order = np.argsort([len(x) for x in inputs], kind="stable")
    outputs: list = [None] * len(inputs)
    with tqdm(total=len(inputs), desc=desc, unit="sent", mininterval=2.0) as progress:
        for start in range(0, len(order), batch_size):
            ids = order[start:start + batch_size]
            for i, output in zip(ids, run([inputs[i] for i in ids]), strict=True):
                outputs[i] = output
            progress.update(len(ids))
    return outputs


def decoders(beam_width: int) -> list[tuple[str, int]]:
    """The decoders every decoding task is measured with: (name, beam width)."""
    return [("greedy", 1), (f"beam{beam_width}", beam_width)]


def best_outputs(signature, contract: FunctionContract, field: str, inputs: Sequence,
                 options: dict, desc: str) -> list[str]:
    """Each input's best hypothesis, through an exported decoder's `signature` called as
    the server calls it (`field`: the input's name; `options`: the rank-0 inputs)."""
    def run(batch: list) -> list[str]:
        out = contract.call(signature, [{**options, field: x} for x in batch])
        return [text.decode("utf-8") for text in out["texts"][:, 0]]

    return in_length_order(run, inputs, desc=desc)


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
    }
