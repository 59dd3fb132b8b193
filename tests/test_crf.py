"""The CRF's sums, best path and marginals against brute force over every tag sequence
of short sentences, padded into one batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from model.crf import CRF

TAGS = 3


@pytest.fixture(scope="module")
def crf_and_batch():
    rng = np.random.default_rng(0)
    crf = CRF(TAGS)
    crf.transitions.assign(rng.normal(0, 1, (TAGS, TAGS)))
    crf.start.assign(rng.normal(0, 1, TAGS))
    crf.end.assign(rng.normal(0, 1, TAGS))
    lengths = [4, 1, 3, 0]
    scores = rng.normal(0, 1.5, (len(lengths), 4, TAGS)).astype(np.float32)
    mask = np.arange(4)[None, :] < np.array(lengths)[:, None]
    return crf, scores, mask, lengths


def path_score(crf: CRF, scores: np.ndarray, path: tuple[int, ...]) -> float:
    t, s, e = (v.numpy() for v in (crf.transitions, crf.start, crf.end))
    return float(s[path[0]] + sum(scores[i, k] for i, k in enumerate(path))
                 + sum(t[a, b] for a, b in itertools.pairwise(path)) + e[path[-1]])


def every_path(crf: CRF, scores: np.ndarray, length: int) -> dict[tuple[int, ...], float]:
    return {p: path_score(crf, scores, p) for p in itertools.product(range(TAGS), repeat=length)}


def test_the_normalizer_and_likelihood_sum_over_every_sequence(crf_and_batch):
    crf, scores, mask, lengths = crf_and_batch
    normalizer = crf.log_normalizer(tf.constant(scores), tf.constant(mask)).numpy()
    tags = np.random.default_rng(1).integers(0, TAGS, (len(lengths), 4))
    likelihood = crf.log_likelihood(tf.constant(scores), tf.constant(tags),
                                    tf.constant(mask)).numpy()
    for row, length in enumerate(lengths):
        if not length:
            assert normalizer[row] == 0 and likelihood[row] == 0
            continue
        paths = every_path(crf, scores[row], length)
        expected = np.logaddexp.reduce(list(paths.values()))
        assert normalizer[row] == pytest.approx(expected, abs=1e-4)
        gold = tuple(int(k) for k in tags[row, :length])
        assert likelihood[row] == pytest.approx(paths[gold] - expected, abs=1e-4)


def test_viterbi_finds_the_best_sequence_and_marginals_are_probabilities(crf_and_batch):
    crf, scores, mask, lengths = crf_and_batch
    best = crf.decode(tf.constant(scores), tf.constant(mask)).numpy()
    marginals = crf.marginals(tf.constant(scores), tf.constant(mask)).numpy()
    for row, length in enumerate(lengths):
        assert (best[row, length:] == 0).all() and (marginals[row, length:] == 0).all()
        if not length:
            continue
        paths = every_path(crf, scores[row], length)
        assert tuple(best[row, :length]) == max(paths, key=paths.get)
        weights = np.exp(np.array(list(paths.values())) - max(paths.values()))
        weights /= weights.sum()
        for position in range(length):
            for tag in range(TAGS):
                expected = sum(w for p, w in zip(paths, weights, strict=True)
                               if p[position] == tag)
                assert marginals[row, position, tag] == pytest.approx(expected, abs=1e-5)


def test_a_sentence_scores_the_same_alone_or_padded_in_a_batch(crf_and_batch):
    crf, scores, mask, lengths = crf_and_batch
    together = crf.decode(tf.constant(scores), tf.constant(mask)).numpy()
    for row, length in enumerate(lengths[:3]):
        alone = crf.decode(tf.constant(scores[row:row + 1, :length]),
                           tf.constant(mask[row:row + 1, :length])).numpy()
        np.testing.assert_array_equal(alone[0], together[row, :length])
