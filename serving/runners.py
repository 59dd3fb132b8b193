"""How each task's SavedModel signature runs on a batch (on the batcher's worker thread)."""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from serving import metrics


class DecodeKey(NamedTuple):
    """Decode options of a batch: the signature takes them as scalars, so requests
    with different options go to different batches (the batcher groups by key)."""

    beam_width: int
    num_hypotheses: int
    length_penalty: float
    max_length: int
    max_length_ratio: float


class Hypothesis(NamedTuple):
    text: str
    score: float
    log_prob: float
    num_tokens: int


def translate_batch(signature, key: DecodeKey, texts: list[str],
                    model: str = "") -> list[list[Hypothesis]]:
    """texts [batch] -> per text its n-best list, best first; with `model`, records
    the batch's padding and decoding steps under that metric label."""
    out = signature(texts=tf.constant(texts, tf.string),
                    beam_width=tf.constant(key.beam_width, tf.int32),
                    num_hypotheses=tf.constant(key.num_hypotheses, tf.int32),
                    length_penalty=tf.constant(key.length_penalty, tf.float32),
                    max_length=tf.constant(key.max_length, tf.int32),
                    max_length_ratio=tf.constant(key.max_length_ratio, tf.float32))
    if model and "source_tokens" in out:  # exports before step decoding lack them
        metrics.PADDING_RATIO.labels(model).observe(
            padding_ratio(out["source_tokens"].numpy().tolist()))
        metrics.DECODE_STEPS.labels(model).observe(int(out["decode_steps"]))
    return hypotheses(out)


def hypotheses(out: dict[str, tf.Tensor]) -> list[list[Hypothesis]]:
    """A decode's texts, scores, log_probs, num_tokens [batch, n] -> n-best lists."""
    texts, scores = out["texts"].numpy(), out["scores"].numpy()
    log_probs, lengths = out["log_probs"].numpy(), out["num_tokens"].numpy()
    return [[Hypothesis(texts[i, j].decode("utf-8"), float(scores[i, j]),
                        float(log_probs[i, j]), int(lengths[i, j]))
             for j in range(texts.shape[1])] for i in range(texts.shape[0])]


def padding_ratio(source_tokens: list[int]) -> float:
    """Share of the source positions in a padded batch that are padding."""
    width = max(source_tokens, default=0)
    return 1.0 - sum(source_tokens) / (width * len(source_tokens)) if width else 0.0
