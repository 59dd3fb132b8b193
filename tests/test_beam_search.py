"""Proofs of the one beam search, on two models whose probabilities can be checked:
a bigram table (every probability known in closed form) and a tiny attention
Seq2Seq (teacher-forced through Keras, decoded step by step through its cell)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from model.beam_search import BeamSearch, BeamSearchResult, concat_rows, finished_rows, select_rows
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID, EOS_ID


class Bigram:
    """log p(next | last, input) = log_softmax(table[last] + bias[input])."""

    name = "bigram"
    vocab = 6
    outputs = tuple(t for t in range(6) if t != EOS_ID)  # tokens a hypothesis may contain

    def __init__(self):
        rng = np.random.default_rng(7)
        self.table = rng.normal(0, 2, size=(self.vocab, self.vocab)).astype(np.float32)
        self.biases = rng.normal(0, 1.5, size=(4, self.vocab)).astype(np.float32)

    def start(self, inputs):
        """-> (initial state, context) of the beam search; the input's bias is its context."""
        return (), tf.constant(self.biases[inputs])

    def step(self, tokens, state, bias):
        per_hypothesis = tf.repeat(bias, tf.shape(tokens)[0] // tf.shape(bias)[0], axis=0)
        return tf.nn.log_softmax(tf.gather(tf.constant(self.table), tokens) + per_hypothesis), \
            state

    def next_log_probs(self, index, prefix) -> np.ndarray:
        logits = self.table[prefix[-1] if prefix else BOS_ID] + self.biases[index]
        return logits - np.log(np.exp(logits).sum())

    def log_prob(self, index, tokens) -> float:
        return float(sum(self.next_log_probs(index, tokens[:t])[token]
                         for t, token in enumerate([*tokens, EOS_ID])))


class TinySeq2Seq:
    """A randomly initialised attention Seq2Seq over 6 ids; sources of different lengths."""

    name = "seq2seq"
    vocab = 6
    outputs = (1, 4, 5)  # PAD and BOS are never outputs, EOS ends
    sources = ((4, 5, 1, 3), (5, 3), (1, 4, 4, 5, 5, 3), (4, 3))

    def __init__(self, cell: str = "lstm", encoder_layers: int = 1):
        tf.random.set_seed(3)
        self.model = Seq2Seq(self.vocab, embedding_dim=8, units=16, cell=cell, dropout=0.0,
                             encoder_layers=encoder_layers)
        self.model((tf.constant([[4, 3]]), tf.constant([[BOS_ID, 4]])))
        # sharpen the random distribution so that search choices matter
        kernel = self.model.projection.kernel
        kernel.assign(kernel * 8.0)

    def _padded(self, inputs):
        width = max(len(self.sources[i]) for i in inputs)
        return tf.constant([[*self.sources[i]] + [0] * (width - len(self.sources[i]))
                            for i in inputs])

    def start(self, inputs):
        return self.model.start_decoding(self._padded(inputs))

    def step(self, tokens, state, context):
        return self.model.decode_step(tokens, state, context)

    def _teacher_forced(self, index, tokens) -> np.ndarray:
        """[len(tokens) + 1, vocab] log-probs from the Keras model's full-sequence call."""
        logits = self.model((self._padded([index]), tf.constant([[BOS_ID, *tokens]])))
        return tf.nn.log_softmax(logits[0]).numpy()

    def next_log_probs(self, index, prefix) -> np.ndarray:
        return self._teacher_forced(index, prefix)[-1]

    def log_prob(self, index, tokens) -> float:
        log_probs = self._teacher_forced(index, tokens)
        return float(sum(log_probs[t, token] for t, token in enumerate([*tokens, EOS_ID])))


@pytest.fixture(params=[Bigram, TinySeq2Seq, lambda: TinySeq2Seq("gru", 2),
                        lambda: TinySeq2Seq("rnn")],
                ids=["bigram", "lstm", "gru-2-layers", "simple-rnn"], scope="module")
def decoder(request):
    return request.param()


def search(decoder, inputs, beam, n, alpha, max_lengths) -> BeamSearchResult:
    """The in-graph driver: one call decodes the whole batch."""
    state, context = decoder.start(inputs)
    return BeamSearch(BOS_ID, EOS_ID)(decoder.step, state, context, tf.constant(beam),
                                      tf.constant(n), tf.constant(alpha),
                                      tf.constant(max_lengths))


def hypotheses(result: BeamSearchResult, row: int):
    return [(result.tokens[row, j, :result.lengths[row, j]].numpy().tolist(),
             float(result.log_probs[row, j]), float(result.scores[row, j]))
            for j in range(result.lengths.shape[1])]


def test_beam_width_one_is_greedy_decoding(decoder):
    for index in range(4):
        tokens: list[int] = []
        while len(tokens) < 6:  # greedy: the teacher-forced model's most probable next token
            best = int(np.argmax(decoder.next_log_probs(index, tokens)))
            if best == EOS_ID:
                break
            tokens.append(best)
        (found, log_prob, _), = hypotheses(search(decoder, [index], 1, 1, 0.0, [6]), 0)
        assert found == tokens
        assert log_prob == pytest.approx(decoder.log_prob(index, tokens), abs=1e-4)


def test_wide_beam_finds_the_exhaustive_optimum(decoder):
    max_length = 3
    candidates = [list(seq) for n in range(max_length + 1)
                  for seq in itertools.product(decoder.outputs, repeat=n)]
    beam = len(decoder.outputs) ** max_length  # at least every prefix fits
    for index in range(2):
        best = max(candidates, key=lambda seq: decoder.log_prob(index, seq))
        (found, log_prob, _), = hypotheses(
            search(decoder, [index], beam, 1, 0.0, [max_length]), 0)
        assert found == best
        assert log_prob == pytest.approx(decoder.log_prob(index, best), abs=1e-4)


def test_scores_are_teacher_forced_log_probs_and_ranked(decoder):
    found = hypotheses(search(decoder, [0], 4, 4, 0.6, [5]), 0)
    for tokens, log_prob, score in found:
        assert log_prob == pytest.approx(decoder.log_prob(0, tokens), abs=1e-4)
        assert score == pytest.approx(log_prob / ((5 + len(tokens) + 1) / 6) ** 0.6, abs=1e-4)
        assert len(tokens) <= 5
    scores = [s for _, _, s in found]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(t) for t, _, _ in found}) == 4, "n-best entries must differ"


def test_batching_and_padding_never_change_an_answer(decoder):
    limits = [2, 5, 4, 3]
    together = search(decoder, [0, 1, 2, 3], 3, 2, 0.6, limits)
    for row in range(4):
        alone = search(decoder, [row], 3, 2, 0.6, [limits[row]])
        for (t1, l1, s1), (t2, l2, s2) in zip(hypotheses(together, row), hypotheses(alone, 0),
                                              strict=True):
            assert t1 == t2
            assert l1 == pytest.approx(l2, abs=1e-4) and s1 == pytest.approx(s2, abs=1e-4)


@pytest.mark.parametrize(("beam", "steps"), [(1, 1), (4, 2)])
def test_finished_hypotheses_stop_the_loop_early(beam, steps):
    """A model that (almost) always ends at once costs one step per live hypothesis
    generation, not max_length steps: greedy ends after step 1; a beam of 4 keeps three
    runners-up alive after step 1, which all end at step 2."""
    calls = []

    def step(tokens, state, context):
        calls.append(1)
        return tf.nn.log_softmax(tf.one_hot(tf.fill(tf.shape(tokens), EOS_ID), 6) * 50.0), state

    result = BeamSearch(BOS_ID, EOS_ID)(step, tf.zeros([2, 1]), (), tf.constant(beam),
                                        tf.constant(1), tf.constant(0.0), tf.constant([100, 100]))
    assert result.lengths.numpy().tolist() == [[0], [0]]
    assert len(calls) == steps


def test_beam_search_compiles_with_xla():
    bigram = Bigram()

    def step(tokens, state, bias):
        return bigram.step(tokens, state, bias)

    @tf.function(jit_compile=True)
    def compiled_search(biases, beam, n, alpha, limits):
        return BeamSearch(BOS_ID, EOS_ID)(step, (), biases, beam, n, alpha, limits)

    args = (tf.constant(bigram.biases[:2]), tf.constant(3), tf.constant(2), tf.constant(0.6),
            tf.constant([4, 5]))
    compiled = compiled_search(*args)
    eager = search(bigram, [0, 1], 3, 2, 0.6, [4, 5])
    np.testing.assert_array_equal(compiled.tokens.numpy(), eager.tokens.numpy())
    np.testing.assert_allclose(compiled.scores.numpy(), eager.scores.numpy(), atol=1e-5)


def test_inputs_joining_and_leaving_a_running_search_get_the_same_answers(decoder):
    """The step driver (serving's step scheduler): inputs with their own length penalty
    and limit join a search already under way, and leave it as soon as they end. Each
    gets exactly what the in-graph loop gives it alone."""
    search_ = BeamSearch(BOS_ID, EOS_ID)
    alphas, limits, beam, n = [0.0, 0.6, 1.0, 0.6], [5, 3, 6, 4], 3, 2

    def begin(rows):
        state, context = decoder.start(rows)
        return search_.initialize(state, context, tf.constant(beam),
                                  tf.constant([alphas[r] for r in rows]),
                                  tf.constant([limits[r] for r in rows]))

    running, ids, answers, steps = begin([0, 1]), [0, 1], {}, 0
    while ids:
        if steps == 2:  # two more inputs arrive, with sources of other lengths
            running, ids = concat_rows([running, begin([2, 3])]), [*ids, 2, 3]
        running, steps = search_.step(decoder.step, running), steps + 1
        done = finished_rows(running).numpy()
        if done.any():
            result = search_.finalize(select_rows(running, tf.where(done)[:, 0]), tf.constant(n))
            for row, index in enumerate(i for i, d in zip(ids, done, strict=True) if d):
                answers[index] = hypotheses(result, row)
            running = select_rows(running, tf.where(~done)[:, 0])
            ids = [i for i, d in zip(ids, done, strict=True) if not d]
    assert steps <= 2 + max(limits) + 1

    for index in range(4):
        alone = hypotheses(search(decoder, [index], beam, n, alphas[index], [limits[index]]), 0)
        for (t1, l1, s1), (t2, l2, s2) in zip(answers[index], alone, strict=True):
            assert t1 == t2
            assert l1 == pytest.approx(l2, abs=1e-4) and s1 == pytest.approx(s2, abs=1e-4)
