"""The one beam search: translation, captioning and the char-LM all decode with it.

Pure TensorFlow ops in a `tf.while_loop`, so it is exported inside SavedModels
and runs wherever TensorFlow places it. A model plugs in through a step
function; decoding options are tensors, so each request can choose them, and
every option is per input (row), so that inputs of different requests can share
one running search.

Each input starts from its own token (BOS, or a prompt's last character) and
chooses its continuations through the sampler seam (`model/sampling.py`): by score
(beam search; greedy at width 1) or at random (temperature, top-k, top-p, seed).
Finished hypotheses are frozen: their only continuation is EOS at zero cost, so
their score never changes and they spend no expansion. The loop stops as soon
as every hypothesis of every input has finished, or at the length limit, where
EOS is forced (a returned score is always the log-probability of the tokens
shown followed by EOS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from model.sampling import NEG_INF, Sampling, by_score, perturb
from model.top_k import blocked_top_k

State = Any  # a nest of tensors, each [batch * beam, ...]
StepFn = Callable[[tf.Tensor, State, State, tf.Tensor], tuple[tf.Tensor, State]]
"""step(tokens [batch * beam], state, context, steps [batch]) -> (log-probs [batch * beam,
vocab], state).

`state` [batch * beam, ...] changes every step and follows its hypothesis;
`context` [batch, ...] (e.g. attention memory) is fixed per input and shared by
its hypotheses (input i owns hypotheses i * beam ... i * beam + beam - 1), so it
is never copied per hypothesis nor reordered. `steps` [batch] counts the tokens each
input has decoded so far (inputs of a step-level decode differ).
"""


class BeamSearchResult(NamedTuple):
    tokens: tf.Tensor  # [batch, n, time] int32, EOS excluded, padded with 0
    lengths: tf.Tensor  # [batch, n] int32, tokens per hypothesis
    log_probs: tf.Tensor  # [batch, n] float32, sum of log-probs, EOS included
    scores: tf.Tensor  # [batch, n] float32, log_probs / length penalty; best first


class Beams(NamedTuple):
    """Everything needed to continue a search; each input's row is independent, so
    rows of different searches can be concatenated and finished rows dropped."""

    step: tf.Tensor  # [batch] int32, tokens decoded so far per input
    alpha: tf.Tensor  # [batch] float32, length penalty exponent per input
    max_length: tf.Tensor  # [batch] int32, output tokens allowed per input, EOS excluded
    last_tokens: tf.Tensor  # [batch * beam] int32
    tokens: tf.Tensor  # [batch, beam, time] int32
    log_probs: tf.Tensor  # [batch, beam] float32
    lengths: tf.Tensor  # [batch, beam] int32
    finished: tf.Tensor  # [batch, beam] bool
    model_state: State  # nest of [batch * beam, ...]
    context: State  # nest of [batch, ...]
    sampling: Sampling  # [batch] each: how continuations are chosen


NOMINATE_FROM_LOG_PROBS = 1 << 18
"""Hypotheses x vocabulary at which nominating from log-probabilities pays (see
`BeamSearch._nominated`): measured here, its few extra small ops cost 3-14 % of a step
of 4 hypotheses over 4,000 subwords, and its saved passes gain 8 % at 256 x 8,000."""

PER_HYPOTHESIS = ("last_tokens", "model_state")
"""Fields of `Beams` with a row per hypothesis; every other field has one per input."""


def length_penalty(lengths: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha; alpha 0 ranks by plain log-probability."""
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, alpha)


def ranked_in_full(log_probs: tf.Tensor, penalty: tf.Tensor, scores: tf.Tensor,
                   k: tf.Tensor) -> tf.Tensor:
    """[batch, beam, k] ids of each hypothesis' k best tokens by (score + log_prob) /
    penalty, ranking its whole scored vocabulary."""
    return blocked_top_k((scores + log_probs) / penalty, k=k)[1]


class BeamSearch:
    """Beam search over a step function, in three steps: initialize, step, finalize.

    Args:
      bos_id: token fed at the first step.
      eos_id: token that ends a hypothesis.
    """

    def __init__(self, bos_id: int, eos_id: int):
        self.bos_id = bos_id
        self.eos_id = eos_id

    def __call__(self, step_fn: StepFn, initial_state: State, context: State,
                 beam_width: tf.Tensor, num_hypotheses: tf.Tensor, alpha: tf.Tensor,
                 max_length: tf.Tensor, start_tokens: tf.Tensor | None = None,
                 sampling: Sampling | None = None) -> BeamSearchResult:
        """Decodes a batch in one in-graph loop (the other driver, serving's step
        scheduler, calls initialize / step / finalize itself).

        Args:
          step_fn: the model's step, see `StepFn`.
          initial_state: nest of [batch, ...] tensors, one entry per input.
          context: nest of [batch, ...] tensors the step reads but never changes.
          beam_width: [] int32, hypotheses kept per input (1 = greedy).
          num_hypotheses: [] int32, hypotheses returned per input (<= beam_width).
          alpha: [] or [batch] float32, length penalty exponent.
          max_length: [batch] int32, output tokens allowed per input, EOS excluded.
          start_tokens: [batch] int32, the token each input's first step is fed
            (default: BOS).
          sampling: per input, how continuations are chosen (default: by score).
        """
        beams = self.initialize(initial_state, context, beam_width, alpha, max_length,
                                start_tokens, sampling)
        return self.finalize(self.run(step_fn, beams), num_hypotheses)

    def initialize(self, initial_state: State, context: State, beam_width: tf.Tensor,
                   alpha: tf.Tensor, max_length: tf.Tensor,
                   start_tokens: tf.Tensor | None = None,
                   sampling: Sampling | None = None) -> Beams:
        """Copies each input's state `beam_width` times; only the first copy is live."""
        max_length = tf.cast(max_length, tf.int32)
        batch = tf.shape(max_length)[0]
        first = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, beam_width - 1], NEG_INF)], 1)
        if start_tokens is None:
            start_tokens = tf.fill([batch], tf.constant(self.bos_id, tf.int32))

        return Beams(
            step=tf.zeros([batch], tf.int32),
            alpha=tf.broadcast_to(tf.cast(alpha, tf.float32), [batch]),
            max_length=max_length,
            last_tokens=tf.repeat(tf.cast(start_tokens, tf.int32), beam_width),
            tokens=tf.zeros([batch, beam_width, tf.reduce_max(max_length) + 1], tf.int32),
            log_probs=first,
            lengths=tf.zeros([batch, beam_width], tf.int32),
            finished=tf.zeros([batch, beam_width], tf.bool),
            model_state=tf.nest.map_structure(lambda s: tf.repeat(s, beam_width, axis=0),
                                              initial_state),
            context=context,
            sampling=by_score(batch) if sampling is None else sampling,
        )

    def run(self, step_fn: StepFn, beams: Beams, max_steps: tf.Tensor | None = None) -> Beams:
        """Steps until every input has ended (at most max_length + 1 steps), or after
        `max_steps` (the step driver's calls, between which inputs join and leave)."""

        def go_on(b: Beams) -> tf.Tensor:
            return tf.logical_not(tf.reduce_all(finished_rows(b)))

        (beams,) = tf.while_loop(
            go_on, lambda b: (self.step(step_fn, b),), (beams,),
            maximum_iterations=tf.shape(beams.tokens)[2] if max_steps is None else max_steps)
        return beams

    def step(self, step_fn: StepFn, beams: Beams) -> Beams:
        """Expands every live hypothesis by one token and keeps `beam_width`: the best, or
        for sampled inputs a random draw."""
        batch, beam = tf.shape(beams.log_probs)[0], tf.shape(beams.log_probs)[1]
        log_probs, model_state = step_fn(beams.last_tokens, beams.model_state, beams.context,
                                         beams.step)
        vocab = log_probs.shape[-1] or tf.shape(log_probs)[-1]  # static where known
        log_probs = tf.reshape(tf.cast(log_probs, tf.float32), [batch, beam, vocab])
        step = beams.step[:, None]  # [batch, 1]
        scored = tf.where(beams.finished, beams.lengths + 1, step + 1)  # tokens scored
        penalty = length_penalty(scored, beams.alpha[:, None])[..., None]  # [batch, beam, 1]
        candidates = tf.cond(tf.reduce_any(beams.sampling.temperature > 0),
                             lambda: self._sampled_candidates(log_probs, penalty, beams),
                             lambda: self._best_candidates(log_probs, penalty, beams))
        ids, candidate_log_probs, ranking = candidates  # each [batch, beam, k]
        k = tf.shape(ids)[2]
        _, chosen = tf.math.top_k(tf.reshape(ranking, [batch, -1]), k=beam)  # [batch, beam]
        origin = chosen // k
        token = tf.gather(tf.reshape(ids, [batch, -1]), chosen, batch_dims=1)
        totals = beams.log_probs[..., None] + candidate_log_probs  # [batch, beam, k]

        was_finished = tf.gather(beams.finished, origin, batch_dims=1)
        token = tf.where(was_finished, 0, token)
        ended = tf.logical_or(was_finished, tf.equal(token, self.eos_id))
        lengths = tf.where(was_finished, tf.gather(beams.lengths, origin, batch_dims=1),
                           step + tf.cast(tf.logical_not(ended), tf.int32))
        written = tf.where(ended, 0, token)
        position = tf.one_hot(beams.step, tf.shape(beams.tokens)[2], dtype=tf.int32)
        tokens = (tf.gather(beams.tokens, origin, batch_dims=1)
                  + written[..., None] * position[:, None, :])

        flat_origin = tf.reshape(origin + tf.range(batch)[:, None] * beam, [-1])
        return beams._replace(
            step=beams.step + 1,
            last_tokens=tf.reshape(token, [-1]),
            tokens=tokens,
            log_probs=tf.gather(tf.reshape(totals, [batch, -1]), chosen, batch_dims=1),
            lengths=lengths,
            finished=ended,
            model_state=tf.nest.map_structure(lambda s: tf.gather(s, flat_origin), model_state),
        )

    # An input's continuations are ranked by one score per (hypothesis, token), so its
    # `beam` best are among the `beam` best of each of its hypotheses: each hypothesis
    # nominates those k candidates ([batch, beam, k] ids, their log-probabilities and
    # ranking scores), and only beam * k per input are ranked together, not the whole
    # vocabulary beam times over. Ties (equal scores after rounding) keep the order of a
    # full ranking (by hypothesis, then by token id), so the choice is exactly its.

    def _best_candidates(self, log_probs: tf.Tensor, penalty: tf.Tensor, beams: Beams
                         ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """By score: each hypothesis' k best-scoring tokens; one that has finished (or
        whose input is at its length limit) nominates only EOS (at no cost if finished)."""
        k = tf.minimum(tf.shape(beams.log_probs)[1], tf.shape(log_probs)[2])
        at_limit = (beams.step >= beams.max_length)[:, None]  # [batch, 1]
        only_eos = tf.logical_or(beams.finished, at_limit)[..., None]  # [batch, beam, 1]
        scores = beams.log_probs[..., None]  # [batch, beam, 1]
        ids = tf.cond(tf.size(log_probs) >= NOMINATE_FROM_LOG_PROBS,
                      lambda: self._nominated(log_probs, penalty, scores, k, only_eos),
                      lambda: ranked_in_full(log_probs, penalty, scores, k))
        best = tf.gather(log_probs, ids, batch_dims=2)  # [batch, beam, k]
        # EOS first, then impossible continuations in token order, as the full ranking
        # would list them (they are only ever chosen when an input has too few others).
        place = tf.range(k) - 1  # [k]
        forced_ids = tf.where(place < 0, self.eos_id,
                              place + tf.cast(place >= self.eos_id, tf.int32))
        eos = tf.where(beams.finished, 0.0, log_probs[:, :, self.eos_id])[..., None]
        ids = tf.where(only_eos, forced_ids, ids)
        best = tf.where(only_eos, tf.where(place < 0, eos, NEG_INF), best)
        return ids, best, (scores + best) / penalty

    @staticmethod
    def _nominated(log_probs: tf.Tensor, penalty: tf.Tensor, scores: tf.Tensor, k: tf.Tensor,
                   only_eos: tf.Tensor) -> tf.Tensor:
        """[batch, beam, k] ids: each hypothesis' k best tokens by (score + log_prob) /
        penalty, ties in token order, as a full ranking lists them.

        A hypothesis' score and penalty are the same for all its tokens, so its k best
        are those of its log-probabilities: ranked on those alone, the step saves two
        passes over [batch, beam, vocab] (at batch 64 and 8,000 subwords, a twelfth of
        it). Rounding can make log-probabilities equal once scored; the nominees are
        then ordered by token, and where the k-th and the next are equal (the dead
        copies of a first step, rare ties) which one a full ranking picks is in doubt,
        so the step ranks in full. Rows that only nominate EOS (`only_eos`) never doubt.
        """
        n = tf.minimum(k + 1, tf.shape(log_probs)[2])
        _, ids = blocked_top_k(log_probs, k=n)  # [batch, beam, n]
        ranked = (scores + tf.gather(log_probs, ids, batch_dims=2)) / penalty
        boundary = tf.logical_and(n > k, tf.equal(ranked[..., n - 1], ranked[..., k - 1]))
        in_doubt = tf.reduce_any(tf.logical_and(boundary, tf.logical_not(only_eos[..., 0])))

        def by_token_among_equals() -> tf.Tensor:
            order = tf.argsort(ids[..., :k], axis=-1, stable=True)  # ascending ids
            ascending = tf.gather(ids[..., :k], order, batch_dims=2)
            _, place = tf.math.top_k(tf.gather(ranked[..., :k], order, batch_dims=2), k=k)
            return tf.gather(ascending, place, batch_dims=2)

        return tf.cond(in_doubt, lambda: ranked_in_full(log_probs, penalty, scores, k),
                       by_token_among_equals)

    def _sampled_candidates(self, log_probs: tf.Tensor, penalty: tf.Tensor, beams: Beams
                            ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Some inputs sample: their ranking is random over the whole vocabulary, so every
        hypothesis is constrained and ranked in full before it nominates its k best."""
        vocab = tf.shape(log_probs)[2]
        is_eos = tf.equal(tf.range(vocab), self.eos_id)  # [vocab]
        # Frozen: a finished hypothesis only continues with EOS, at no cost.
        log_probs = tf.where(beams.finished[..., None], tf.where(is_eos, 0.0, NEG_INF), log_probs)
        # At its length limit an input's hypotheses must end now.
        at_limit = (beams.step >= beams.max_length)[:, None, None]  # [batch, 1, 1]
        log_probs = tf.where(tf.logical_and(at_limit, tf.logical_not(is_eos)), NEG_INF, log_probs)
        ranking = (beams.log_probs[..., None] + log_probs) / penalty
        ranking = perturb(ranking, log_probs, beams.log_probs, beams.sampling, beams.step)
        k = tf.minimum(tf.shape(beams.log_probs)[1], vocab)
        ranking, ids = blocked_top_k(ranking, k=k)
        return ids, tf.gather(log_probs, ids, batch_dims=2), ranking

    def finalize(self, beams: Beams, num_hypotheses: tf.Tensor) -> BeamSearchResult:
        """Ranks the hypotheses by length-penalised score and keeps the best `num_hypotheses`."""
        scores = beams.log_probs / length_penalty(beams.lengths + 1, beams.alpha[:, None])
        scores, order = tf.math.top_k(scores, k=num_hypotheses)
        time = tf.maximum(tf.reduce_max(beams.lengths), 1)
        return BeamSearchResult(
            tokens=tf.gather(beams.tokens, order, batch_dims=1)[:, :, :time],
            lengths=tf.gather(beams.lengths, order, batch_dims=1),
            log_probs=tf.gather(beams.log_probs, order, batch_dims=1),
            scores=scores,
        )


def finished_rows(beams: Beams) -> tf.Tensor:
    """[batch] bool: inputs whose every hypothesis has ended (ready to finalize)."""
    return tf.reduce_all(beams.finished, axis=1)


def hypotheses_only(beams: Beams) -> Beams:
    """`beams` without the model's state and context: all that `finalize` reads, and
    much cheaper to gather."""
    return beams._replace(model_state=[], context=())


def select_rows(beams: Beams, rows: tf.Tensor) -> Beams:
    """Keeps the inputs `rows` [k] (in that order), with all their hypotheses; the
    token buffer shrinks to the longest limit left.

    Reads fields by name, so it also regroups the search state of exports written
    before a field was added (their `Beams` as restored from the SavedModel).
    """
    rows = tf.cast(rows, tf.int32)
    beam = tf.shape(beams.log_probs)[1]
    hypotheses = tf.reshape(rows[:, None] * beam + tf.range(beam)[None, :], [-1])

    def take(name: str, value):
        ids = hypotheses if name in PER_HYPOTHESIS else rows
        return tf.nest.map_structure(lambda t: tf.gather(t, ids), value)

    kept = {name: take(name, value) for name, value in beams._asdict().items()}
    kept["tokens"] = kept["tokens"][:, :, :tf.reduce_max(kept["max_length"]) + 1]
    return type(beams)(**kept)


def settled(beams: Beams) -> tuple[tf.Tensor, tf.Tensor]:
    """What each input has decoded that no later step can change: the prefix shared by
    all its hypotheses (at beam width 1, the whole hypothesis), for streaming.

    Returns tokens [batch, time] and lengths [batch].
    """
    tokens = beams.tokens  # [batch, beam, time]
    agree = tf.reduce_all(tf.equal(tokens, tokens[:, :1, :]), axis=1)  # [batch, time]
    shared = tf.reduce_sum(tf.math.cumprod(tf.cast(agree, tf.int32), axis=1), axis=1)
    lengths = tf.minimum(shared, tf.reduce_min(beams.lengths, axis=1))
    return tokens[:, 0, :], lengths


def concat_rows(parts: list[Beams], pad: bool = True) -> Beams:
    """Joins searches of the same beam width into one batch.

    Inputs may differ in their other dimensions (output time, source time): each
    tensor is zero-padded up to the largest, which decoding never reads (token
    buffers beyond a row's limit, attention memory beyond its mask). With
    `pad=False` only the token buffers are (their length depends on the rows kept):
    for parts whose other tensors agree in every dimension but the first, with a
    fifth of the ops.
    """
    if len(parts) == 1:
        return parts[0]

    def padded(*tensors):  # shapes may be unknown when traced, hence tf.shape
        widest = tf.reduce_max(tf.stack([tf.shape(t) for t in tensors]), axis=0)
        return tf.concat([
            tf.pad(t, tf.stack([tf.zeros_like(widest),
                                tf.concat([[0], widest[1:] - tf.shape(t)[1:]], 0)], axis=1))
            for t in tensors], axis=0)

    def concat(name: str):
        join = padded if pad or name == "tokens" else lambda *t: tf.concat(t, axis=0)
        return tf.nest.map_structure(join, *(getattr(part, name) for part in parts))

    return type(parts[0])(**{name: concat(name) for name in parts[0]._fields})
