"""Proofs of the one beam search and its sampler, on two models whose probabilities can
be checked: a bigram table (every probability known in closed form) and a tiny
attention Seq2Seq and a tiny captioner (teacher-forced through Keras, decoded step by step
through their cells)."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.beam_search import (
    BeamSearch,
    BeamSearchResult,
    concat_rows,
    finished_rows,
    select_rows,
    settled,
)
from model.image_to_text import ImageToText
from model.sampling import sampling
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

    def step(self, tokens, state, bias, steps):
        per_hypothesis = tf.repeat(bias, tf.shape(tokens)[0] // tf.shape(bias)[0], axis=0)
        return tf.nn.log_softmax(tf.gather(tf.constant(self.table), tokens) + per_hypothesis), \
            state

    def next_log_probs(self, index, prefix, start=BOS_ID) -> np.ndarray:
        logits = self.table[prefix[-1] if prefix else start] + self.biases[index]
        return logits - np.log(np.exp(logits).sum())

    def log_prob(self, index, tokens, start=BOS_ID) -> float:
        return float(sum(self.next_log_probs(index, tokens[:t], start)[token]
                         for t, token in enumerate([*tokens, EOS_ID])))


class TinySeq2Seq:
    """A randomly initialised attention Seq2Seq over 6 ids; sources of different lengths."""

    name = "seq2seq"
    vocab = 6
    outputs = (1, 4, 5)  # PAD and BOS are never outputs, EOS ends
    sources = ((4, 5, 1, 3), (5, 3), (1, 4, 4, 5, 5, 3), (4, 3))

    def __init__(self, cell: str = "lstm", encoder_layers: int = 1):
        keras.utils.set_random_seed(3)  # Keras initialisers draw from their own seed
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

    def step(self, tokens, state, context, steps):
        return self.model.decode_step(tokens, state, context, steps)

    def _teacher_forced(self, index, tokens, start=BOS_ID) -> np.ndarray:
        """[len(tokens) + 1, vocab] log-probs from the Keras model's full-sequence call."""
        logits = self.model((self._padded([index]), tf.constant([[start, *tokens]])))
        return tf.nn.log_softmax(logits[0]).numpy()

    def next_log_probs(self, index, prefix, start=BOS_ID) -> np.ndarray:
        return self._teacher_forced(index, prefix, start)[-1]

    def log_prob(self, index, tokens, start=BOS_ID) -> float:
        log_probs = self._teacher_forced(index, tokens, start)
        return float(sum(log_probs[t, token] for t, token in enumerate([*tokens, EOS_ID])))


class TinyImageToText(TinySeq2Seq):
    """A randomly initialised captioner over 6 ids; four random 16x16 images."""

    name = "image-to-text"

    def __init__(self, attention: bool = True):
        keras.utils.set_random_seed(3)
        self.images = np.random.default_rng(5).uniform(size=(4, 16, 16, 3)).astype(np.float32)
        self.model = ImageToText(self.vocab, image_size=16, channels=(4, 8), embedding_dim=8,
                                 units=16, attention=attention, dropout=0.0)
        self.model((tf.constant(self.images[:1]), tf.constant([[BOS_ID, 4]])))
        kernel = self.model.projection.kernel
        kernel.assign(kernel * 8.0)

    def _padded(self, inputs):
        return tf.constant(self.images[list(inputs)])


@pytest.fixture(params=[Bigram, TinySeq2Seq, lambda: TinySeq2Seq("gru", 2),
                        lambda: TinySeq2Seq("rnn"), TinyImageToText,
                        lambda: TinyImageToText(attention=False)],
                ids=["bigram", "lstm", "gru-2-layers", "simple-rnn", "captioner",
                     "captioner-no-attention"], scope="module")
def decoder(request):
    return request.param()


def search(decoder, inputs, beam, n, alpha, max_lengths, start_tokens=None,
           sampled=None) -> BeamSearchResult:
    """The in-graph driver: one call decodes the whole batch. `sampled`: (temperature,
    top_k, top_p, seeds [batch])."""
    state, context = decoder.start(inputs)
    options = None if sampled is None else sampling(*sampled, batch=len(inputs))
    return BeamSearch(BOS_ID, EOS_ID)(decoder.step, state, context, tf.constant(beam),
                                      tf.constant(n), tf.constant(alpha),
                                      tf.constant(max_lengths),
                                      None if start_tokens is None else tf.constant(start_tokens),
                                      options)


def greedy(decoder, index, max_length, start=BOS_ID) -> list[int]:
    """The teacher-forced model's most probable next token, step after step."""
    tokens: list[int] = []
    while len(tokens) < max_length:
        best = int(np.argmax(decoder.next_log_probs(index, tokens, start)))
        if best == EOS_ID:
            break
        tokens.append(best)
    return tokens


def hypotheses(result: BeamSearchResult, row: int):
    return [(result.tokens[row, j, :result.lengths[row, j]].numpy().tolist(),
             float(result.log_probs[row, j]), float(result.scores[row, j]))
            for j in range(result.lengths.shape[1])]


def test_beam_width_one_is_greedy_decoding(decoder):
    for index in range(4):
        tokens = greedy(decoder, index, 6)
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


def test_ranking_each_hypothesis_best_tokens_finds_what_ranking_all_tokens_finds(decoder):
    """By score, each hypothesis nominates only its 3 best tokens; beside a sampled input
    the batch ranks every token of every hypothesis. The beam-searched inputs must get
    the same n-best either way (limits 1 to 5 exercise the EOS-only ends)."""
    for limit in range(1, 6):
        alone = search(decoder, [0, 1], 3, 3, 0.6, [limit, 5])
        beside = search(decoder, [0, 1, 2], 3, 3, 0.6, [limit, 5, 5],
                        sampled=([0.0, 0.0, 1.5], 0, 1.0, [0, 0, 7]))
        for row in range(2):  # (a batch's size may move the model's floats by an ulp)
            assert_same_hypotheses(hypotheses(beside, row), hypotheses(alone, row))


@pytest.mark.parametrize("seed", range(4))
def test_nominating_from_log_probs_chooses_as_ranking_the_scored_tokens(seed):
    """Each hypothesis nominates its k best tokens from its log-probabilities alone (its
    score and penalty are the same for every token). Scored in float32, distinct
    log-probabilities can round to equal scores: the nominees must still be exactly
    those, and in the order, of a full ranking of the scored tokens (ties by token id),
    whether the tie is among the k (the nominees reordered) or at the k-th place (the
    step then ranks in full)."""
    rng = np.random.default_rng(seed)
    batch, beam, vocab, k = 8, 4, 300, 4
    log_probs = -2.0 - rng.uniform(0.0, 1.0, (batch, beam, vocab))
    # Each hypothesis' five best, 1e-5 to 2e-3 apart, at random tokens: a score of -700
    # rounds the first three together (a tie among the k), -90000 all five (at the k-th).
    tops = np.array([-1.0, -1.00001, -1.00002, -1.002, -1.004])
    for b, h in itertools.product(range(batch), range(beam)):
        log_probs[b, h, rng.choice(vocab, 5, replace=False)] = tops
    scores = rng.choice([-3.0, -700.0, -700.0, -90000.0], (batch, beam, 1))
    penalty = rng.uniform(1.0, 1.5, (batch, beam, 1))
    log_probs, scores, penalty = (tf.constant(x, tf.float32) for x in (log_probs, scores,
                                                                       penalty))
    ranked, _ = tf.math.top_k((scores + log_probs) / penalty, k=k + 1)
    tied_among_k = (ranked[..., 0] == ranked[..., 2]) & (ranked[..., k - 1] > ranked[..., k])
    assert tf.reduce_any(tied_among_k), "no row with a tie among the k alone"
    for rows in ([0], [0, 1], list(range(batch))):  # batches with and without doubt
        part = [tf.gather(x, rows) for x in (log_probs, penalty, scores)]
        nominated = BeamSearch._nominated(*part, tf.constant(k),
                                          tf.zeros([len(rows), beam, 1], tf.bool))
        _, full = tf.math.top_k((part[2] + part[0]) / part[1], k=k)
        np.testing.assert_array_equal(nominated.numpy(), full.numpy())


@pytest.mark.parametrize(("beam", "steps"), [(1, 1), (4, 2)])
def test_finished_hypotheses_stop_the_loop_early(beam, steps):
    """A model that (almost) always ends at once costs one step per live hypothesis
    generation, not max_length steps: greedy ends after step 1; a beam of 4 keeps three
    runners-up alive after step 1, which all end at step 2."""
    calls = []

    def step(tokens, state, context, steps):
        calls.append(1)
        return tf.nn.log_softmax(tf.one_hot(tf.fill(tf.shape(tokens), EOS_ID), 6) * 50.0), state

    result = BeamSearch(BOS_ID, EOS_ID)(step, tf.zeros([2, 1]), (), tf.constant(beam),
                                        tf.constant(1), tf.constant(0.0), tf.constant([100, 100]))
    assert result.lengths.numpy().tolist() == [[0], [0]]
    assert len(calls) == steps


def test_beam_search_compiles_with_xla():
    bigram = Bigram()

    def step(tokens, state, bias, steps):
        return bigram.step(tokens, state, bias, steps)

    @tf.function(jit_compile=True)
    def compiled_search(biases, beam, n, alpha, limits):
        return BeamSearch(BOS_ID, EOS_ID)(step, (), biases, beam, n, alpha, limits)

    args = (tf.constant(bigram.biases[:2]), tf.constant(3), tf.constant(2), tf.constant(0.6),
            tf.constant([4, 5]))
    compiled = compiled_search(*args)
    eager = search(bigram, [0, 1], 3, 2, 0.6, [4, 5])
    np.testing.assert_array_equal(compiled.tokens.numpy(), eager.tokens.numpy())
    np.testing.assert_allclose(compiled.scores.numpy(), eager.scores.numpy(), atol=1e-5)


def step_driven(search_: BeamSearch, decoder, begin, n: int) -> tuple[dict, int]:
    """Serving's step driver, simulated: inputs 0 and 1 start, inputs 2 and 3 (sources
    of other lengths) join two steps later (or when nothing runs any more), and each
    input leaves as soon as it ends.
    Returns (index -> its n-best hypotheses, steps taken)."""
    running, ids, answers, steps, joined = begin([0, 1]), [0, 1], {}, 0, False
    while ids or not joined:
        if not joined and (steps == 2 or not ids):  # (0 and 1 may end before step 2)
            joining = begin([2, 3])
            running = concat_rows([running, joining]) if ids else joining
            ids, joined = [*ids, 2, 3], True
        running, steps = search_.step(decoder.step, running), steps + 1
        done = finished_rows(running).numpy()
        if done.any():
            result = search_.finalize(select_rows(running, tf.where(done)[:, 0]), tf.constant(n))
            for row, index in enumerate(i for i, d in zip(ids, done, strict=True) if d):
                answers[index] = hypotheses(result, row)
            running = select_rows(running, tf.where(~done)[:, 0])
            ids = [i for i, d in zip(ids, done, strict=True) if not d]
    return answers, steps


def assert_same_hypotheses(found, expected):
    for (t1, l1, s1), (t2, l2, s2) in zip(found, expected, strict=True):
        assert t1 == t2
        assert l1 == pytest.approx(l2, abs=1e-4) and s1 == pytest.approx(s2, abs=1e-4)


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

    answers, steps = step_driven(search_, decoder, begin, n)
    assert steps <= 2 + max(limits) + 1
    for index in range(4):
        alone = hypotheses(search(decoder, [index], beam, n, alphas[index], [limits[index]]), 0)
        assert_same_hypotheses(answers[index], alone)


def test_each_input_starts_from_its_own_token(decoder):
    """A prompt primes the char-LM: an input's first step is fed its own start token
    instead of BOS, whatever the others in its batch start from."""
    starts = [4, 5, 1, 4]
    together = search(decoder, [0, 1, 2, 3], 1, 1, 0.0, [5] * 4, start_tokens=starts)
    for index, start in enumerate(starts):
        expected = greedy(decoder, index, 5, start)
        (found, log_prob, _), = hypotheses(together, index)
        assert found == expected
        assert log_prob == pytest.approx(decoder.log_prob(index, expected, start), abs=1e-4)
    assert any(abs(hypotheses(together, i)[0][1] - hypotheses(search(
        decoder, [i], 1, 1, 0.0, [5]), 0)[0][1]) > 1e-3 for i in range(4)), \
        "the start token must matter for this check to mean anything"


@pytest.mark.parametrize("pad", [True, False])
def test_the_step_function_is_given_each_inputs_own_step_count(pad):
    """A model whose next token depends only on the step index (4, 5, 4, then EOS) gives
    the same output to an input that joins a running decode late, whether the join pads
    every tensor or (parts of one shape, as images give) only the token buffers."""
    seen = []

    def step(tokens, state, context, steps):
        seen.append(steps)
        per_hypothesis = tf.repeat(steps, tf.shape(tokens)[0] // tf.shape(steps)[0])
        token = tf.where(per_hypothesis >= 3, EOS_ID, 4 + per_hypothesis % 2)
        return tf.nn.log_softmax(tf.one_hot(token, 6) * 50.0), state

    search_ = BeamSearch(BOS_ID, EOS_ID)

    def begin(count):
        return search_.initialize((), (), tf.constant(2), tf.zeros([count]),
                                  tf.fill([count], 10))

    running = search_.step(step, begin(1))
    running = search_.run(step, concat_rows([running, begin(2)], pad))
    result = search_.finalize(running, tf.constant(1))
    assert [hypotheses(result, row)[0][0] for row in range(3)] == [[4, 5, 4]] * 3
    assert seen[1].numpy().tolist() == [1, 0, 0], "per input, not one count for the batch"


def test_top_k_one_and_a_cold_temperature_are_greedy(decoder):
    for index in range(4):
        expected = greedy(decoder, index, 6)
        for temperature, top_k in ((1.0, 1), (1e-4, 0), (3.0, 1)):
            (found, log_prob, _), = hypotheses(search(
                decoder, [index], 1, 1, 0.0, [6], sampled=(temperature, top_k, 1.0, [index])), 0)
            assert found == expected, (temperature, top_k)
            assert log_prob == pytest.approx(decoder.log_prob(index, expected), abs=1e-4), \
                "a sampled hypothesis's log_prob is the model's, untempered"


def test_a_seed_gives_the_same_text_alone_batched_and_joining_late(decoder):
    seeds, limits, options = [11, 12, 13, 14], [5, 4, 6, 5], (1.5, 0, 0.95)
    alone = [hypotheses(search(decoder, [i], 1, 1, 0.0, [limits[i]],
                               sampled=(*options, [seeds[i]])), 0) for i in range(4)]
    batched = search(decoder, [0, 1, 2, 3], 1, 1, 0.0, limits, sampled=(*options, seeds))
    for index in range(4):
        assert_same_hypotheses(hypotheses(batched, index), alone[index])

    search_ = BeamSearch(BOS_ID, EOS_ID)

    def begin(rows):
        state, context = decoder.start(rows)
        return search_.initialize(
            state, context, tf.constant(1), tf.zeros([len(rows)]),
            tf.constant([limits[r] for r in rows]),
            sampling=sampling(*options, [seeds[r] for r in rows], batch=len(rows)))

    joined, _ = step_driven(search_, decoder, begin, 1)
    for index in range(4):
        assert_same_hypotheses(joined[index], alone[index])

    others = {tuple(hypotheses(search(decoder, [0], 1, 1, 0.0, [6], sampled=(*options, [s])),
                               0)[0][0]) for s in range(12)}
    assert len(others) > 1, "different seeds must be able to give different texts"


def filtered(log_probs: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """The distribution the sampler should draw from: tempered, cut, renormalised."""
    tempered = np.exp(log_probs / temperature)
    tempered /= tempered.sum()
    order = np.argsort(-tempered, kind="stable")
    keep = np.zeros(len(tempered), bool)
    mass = 0.0
    for rank, token in enumerate(order):
        if (top_k and rank >= top_k) or (top_p < 1 and mass >= top_p):
            break
        keep[token] = True
        mass += tempered[token]
    kept = np.where(keep, tempered, 0.0)
    return kept / kept.sum()


@pytest.mark.parametrize(("temperature", "top_k", "top_p"),
                         [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.8)])
def test_sampled_texts_follow_the_models_distribution(temperature, top_k, top_p):
    """20,000 sampled outputs of at most 2 tokens on the bigram model, against their
    exact probabilities (chi-square, fixed seeds: the same verdict every run)."""
    bigram, limit, count = Bigram(), 2, 20_000
    result = search(bigram, [0] * count, 1, 1, 0.0, [limit] * count,
                    sampled=(temperature, top_k, top_p, np.arange(count)))
    tokens, lengths = result.tokens.numpy()[:, 0], result.lengths.numpy()[:, 0]
    observed: dict[tuple, int] = {}
    for row, length in zip(tokens, lengths, strict=True):
        key = tuple(row[:length])
        observed[key] = observed.get(key, 0) + 1

    def q(prefix):
        return filtered(bigram.next_log_probs(0, list(prefix)), temperature, top_k, top_p)

    expected = {(): q(())[EOS_ID]}
    for first in bigram.outputs:
        expected[(first,)] = q(())[first] * q((first,))[EOS_ID]
        for second in bigram.outputs:
            expected[(first, second)] = q(())[first] * q((first,))[second]  # EOS forced
    assert sum(expected.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(observed) <= {k for k, p in expected.items() if p > 0}, "impossible outputs"
    bins = [k for k, p in expected.items() if p * count >= 5]
    rest = 1.0 - sum(expected[k] for k in bins)
    chi2 = sum((observed.get(k, 0) - expected[k] * count) ** 2 / (expected[k] * count)
               for k in bins)
    if rest * count >= 5:
        seen_rest = count - sum(observed.get(k, 0) for k in bins)
        chi2 += (seen_rest - rest * count) ** 2 / (rest * count)
        bins.append("rest")
    p_value = float(tf.math.igammac((len(bins) - 1) / 2, chi2 / 2))
    assert p_value > 1e-3, f"chi-square {chi2:.1f} on {len(bins) - 1} df: p = {p_value:.2g}"


def test_the_settled_prefix_is_what_every_hypothesis_shares():
    """What a stream may send: at beam width 1 everything decoded, wider the common part."""
    bigram = Bigram()
    search_ = BeamSearch(BOS_ID, EOS_ID)
    state, context = bigram.start([0, 1])
    beams = search_.initialize(state, context, tf.constant(3), tf.zeros([2]),
                               tf.constant([6, 6]))
    for _ in range(3):
        beams = search_.step(bigram.step, beams)
        tokens, lengths = settled(beams)
        for row in range(2):
            hyps = beams.tokens.numpy()[row]
            shared = int(lengths[row])
            assert all((h[:shared] == tokens.numpy()[row][:shared]).all() for h in hyps)
            if shared < min(beams.lengths.numpy()[row]):
                assert len({tuple(h[:shared + 1]) for h in hyps}) > 1, "the longest prefix"
