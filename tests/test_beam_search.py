"""The beam search on a toy model whose every probability is known exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from model.beam_search import BeamSearch

VOCAB, BOS, EOS = 5, 4, 1


def toy_step(table: np.ndarray):
    """A bigram model: log p(next | last) = log_softmax(table[last] + bias of the input).

    The state is each hypothesis's input bias [n, vocab], so inputs differ.
    """
    table = tf.constant(table, tf.float32)

    def step(tokens, bias):
        return tf.nn.log_softmax(tf.gather(table, tokens) + bias), bias

    return step


def sequence_log_prob(table, bias, tokens) -> float:
    """Teacher-forced log-probability of `tokens` followed by EOS."""
    total, last = 0.0, BOS
    for token in [*tokens, EOS]:
        logits = table[last] + bias
        total += float(logits[token] - np.log(np.exp(logits).sum()))
        last = token
    return total


@pytest.fixture
def table():
    return np.random.default_rng(7).normal(0, 2, size=(VOCAB, VOCAB)).astype(np.float32)


def search(table, biases, beam, n=1, alpha=0.0, max_length=(3,)):
    return BeamSearch(BOS, EOS)(
        toy_step(table), tf.constant(np.array(biases, np.float32)), tf.constant(beam),
        tf.constant(n), tf.constant(alpha), tf.constant(list(max_length)))


def hypotheses(result, row):
    return [(list(result.tokens[row, j, :result.lengths[row, j]].numpy()),
             float(result.log_probs[row, j]), float(result.scores[row, j]))
            for j in range(result.lengths.shape[1])]


def test_beam_width_one_is_greedy_decoding(table):
    bias = np.zeros(VOCAB, np.float32)
    tokens, last = [], BOS
    while len(tokens) < 6:
        token = int(np.argmax(table[last] + bias))
        if token == EOS:
            break
        tokens.append(token)
        last = token
    (found, log_prob, _), = hypotheses(search(table, [bias], beam=1, max_length=(6,)), 0)
    assert found == tokens
    assert log_prob == pytest.approx(sequence_log_prob(table, bias, tokens), abs=1e-4)


def test_wide_beam_finds_the_exhaustive_optimum(table):
    bias = np.random.default_rng(1).normal(0, 1, VOCAB).astype(np.float32)
    max_length = 3
    words = [t for t in range(VOCAB) if t != EOS]
    candidates = [list(seq) for n in range(max_length + 1)
                  for seq in itertools.product(words, repeat=n)]
    best = max(candidates, key=lambda seq: sequence_log_prob(table, bias, seq))
    beam = len(words) ** max_length  # at least every prefix fits
    (found, log_prob, _), = hypotheses(
        search(table, [bias], beam=beam, max_length=(max_length,)), 0)
    assert found == best
    assert log_prob == pytest.approx(sequence_log_prob(table, bias, best), abs=1e-4)


def test_scores_are_teacher_forced_log_probs_and_sorted(table):
    bias = np.zeros(VOCAB, np.float32)
    result = search(table, [bias], beam=4, n=4, alpha=0.6, max_length=(5,))
    found = hypotheses(result, 0)
    for tokens, log_prob, score in found:
        assert log_prob == pytest.approx(sequence_log_prob(table, bias, tokens), abs=1e-4)
        assert score == pytest.approx(log_prob / ((5 + len(tokens) + 1) / 6) ** 0.6, abs=1e-4)
        assert len(tokens) <= 5
    scores = [s for _, _, s in found]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(t) for t, _, _ in found}) == 4, "n-best entries must differ"


def test_batching_never_changes_an_answer(table):
    rng = np.random.default_rng(3)
    biases = rng.normal(0, 1.5, size=(3, VOCAB)).astype(np.float32)
    limits = (2, 5, 4)
    together = search(table, biases, beam=3, n=2, alpha=0.6, max_length=limits)
    for row in range(3):
        alone = search(table, biases[row:row + 1], beam=3, n=2, alpha=0.6,
                       max_length=(limits[row],))
        for (t1, l1, s1), (t2, l2, s2) in zip(hypotheses(together, row), hypotheses(alone, 0),
                                              strict=True):
            assert t1 == t2
            assert l1 == pytest.approx(l2, abs=1e-5) and s1 == pytest.approx(s2, abs=1e-5)
