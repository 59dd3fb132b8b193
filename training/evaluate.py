"""Evaluation: corpus BLEU and chrF (sacrebleu) of a translate function on held-out pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sacrebleu
from tqdm import tqdm

TranslateFn = Callable[[list[str]], list[str]]
"""A batch of sources -> the best translation of each."""


def translate_all(translate: TranslateFn, sources: list[str], batch_size: int = 64,
                  desc: str = "translating") -> list[str]:
    """Translates in batches of similar length (less padding), in the original order."""
    order = np.argsort([len(s) for s in sources], kind="stable")
    outputs: list[str] = [""] * len(sources)
    with tqdm(total=len(sources), desc=desc, unit="sent", mininterval=2.0) as progress:
        for start in range(0, len(order), batch_size):
            ids = order[start:start + batch_size]
            for i, text in zip(ids, translate([sources[i] for i in ids]), strict=True):
                outputs[i] = text
            progress.update(len(ids))
    return outputs


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
    }
