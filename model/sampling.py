"""The sampler seam of the one beam search: how each step's continuations are chosen.

Per input, either by score (temperature 0: beam search, greedy at beam width 1) or at
random from the model's distribution, tempered and cut to the top-k tokens and to the
top-p probability mass (nucleus sampling, Holtzman et al. 2020). Random choice is the
Gumbel-max trick: adding Gumbel noise to log-probabilities and taking the top k draws k
continuations without replacement in proportion to their probabilities (Kool et al.
2019), so the search's own top-k does the sampling; at beam width 1 that is plain
ancestral sampling.

The noise of an input depends only on its seed, its own step count and the candidate
(hypothesis slot, token): an input gets the same text alone, in any batch, and when it
joins a running step-level decode late. TensorFlow's stateless random ops take one seed
per call, not one per row (a map over rows costs milliseconds per step), hence the
small counter-based hash below (MurmurHash3's 32-bit finaliser, in int64 arithmetic so
that every device has the kernels, and no multiplication overflows).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

NEG_INF = -1e9  # as the beam search's: large but finite
_MASK32 = 0xFFFFFFFF
_MIN_TEMPERATURE = 1e-6


class Sampling(NamedTuple):
    """Per input [batch]: temperature (0 = choose by score, no randomness), top_k (0 =
    no cut), top_p (1 = no cut) and the random seed."""

    temperature: tf.Tensor  # [batch] float32
    top_k: tf.Tensor  # [batch] int32
    top_p: tf.Tensor  # [batch] float32
    seed: tf.Tensor  # [batch] int64


def by_score(batch: tf.Tensor) -> Sampling:
    """No sampling: every input is decoded by beam search."""
    return Sampling(tf.zeros([batch]), tf.zeros([batch], tf.int32), tf.ones([batch]),
                    tf.zeros([batch], tf.int64))


def sampling(temperature, top_k, top_p, seed, batch: tf.Tensor) -> Sampling:
    """Options (scalars or [batch]) broadcast to every input."""
    return Sampling(tf.broadcast_to(tf.cast(temperature, tf.float32), [batch]),
                    tf.broadcast_to(tf.cast(top_k, tf.int32), [batch]),
                    tf.broadcast_to(tf.cast(top_p, tf.float32), [batch]),
                    tf.broadcast_to(tf.cast(seed, tf.int64), [batch]))


def perturb(ranking: tf.Tensor, log_probs: tf.Tensor, prefix_log_probs: tf.Tensor,
            options: Sampling, steps: tf.Tensor) -> tf.Tensor:
    """The scores the search ranks continuations by, random for sampled inputs.

    Args:
      ranking: [batch, beam, vocab] the beam search's scores (unchanged for inputs with
        temperature 0).
      log_probs: [batch, beam, vocab] this step's log-probabilities, with the search's
        constraints applied (finished hypotheses and length limits allow only EOS).
      prefix_log_probs: [batch, beam] log-probability of each hypothesis so far.
      steps: [batch] steps each input has taken (part of the noise's key).
    """
    sampled = options.temperature > 0

    def perturbed() -> tf.Tensor:
        temperature = tf.maximum(options.temperature, _MIN_TEMPERATURE)[:, None, None]
        tempered = tf.nn.log_softmax(log_probs / temperature)
        tempered = _cut(tempered, options.top_k, options.top_p)
        noise = gumbel(options.seed, steps, tf.shape(log_probs)[1:])
        return prefix_log_probs[..., None] + tempered + noise

    return tf.cond(tf.reduce_any(sampled),
                   lambda: tf.where(sampled[:, None, None], perturbed(), ranking),
                   lambda: ranking)


def _cut(log_probs: tf.Tensor, top_k: tf.Tensor, top_p: tf.Tensor) -> tf.Tensor:
    """Keeps, per hypothesis, the `top_k` most probable tokens (0 = all) and the smallest
    set of most probable tokens whose mass reaches `top_p` (the most probable always
    stays), renormalised. log_probs [batch, beam, vocab]; top_k, top_p [batch]."""
    order = tf.argsort(log_probs, axis=-1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=-1, stable=True)  # each token's place in `order`
    top_k = top_k[:, None, None]
    keep = tf.logical_or(top_k <= 0, rank < top_k)
    probs = tf.exp(tf.gather(log_probs, order, batch_dims=2))
    before = tf.gather(tf.math.cumsum(probs, axis=-1, exclusive=True), rank, batch_dims=2)
    top_p = top_p[:, None, None]
    keep = tf.logical_and(keep, tf.logical_or(top_p >= 1.0, before < top_p))
    kept = tf.where(keep, log_probs, NEG_INF)
    return kept - tf.reduce_logsumexp(kept, axis=-1, keepdims=True)


def gumbel(seed: tf.Tensor, steps: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """[batch, *shape] standard Gumbel noise, a function of (seed, step) per input and of
    the position within `shape`."""
    uniform_ = uniform(seed, steps, tf.reduce_prod(shape))
    noise = -tf.math.log(-tf.math.log(uniform_))
    return tf.reshape(noise, tf.concat([tf.shape(seed), shape], 0))


def uniform(seed: tf.Tensor, steps: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """[batch, count] floats in (0, 1): 24 random bits each, from a hash of (seed [batch]
    int64, steps [batch], position)."""
    seed = tf.cast(seed, tf.int64)
    low, high = seed & _MASK32, tf.bitwise.right_shift(seed, 32) & _MASK32
    step_key = _fmix((tf.cast(steps, tf.int64) + 0x9E3779B9) & _MASK32)
    key = _fmix(low ^ _fmix(high ^ step_key))[:, None]  # [batch, 1]
    counter = tf.range(tf.cast(count, tf.int64), dtype=tf.int64)[None, :]
    bits = _fmix((_fmix(counter ^ key) + key) & _MASK32)
    return (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) / 16777216.0


def _fmix(h: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finaliser on int64 tensors holding 32-bit values."""
    h = h ^ tf.bitwise.right_shift(h, 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ tf.bitwise.right_shift(h, 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ tf.bitwise.right_shift(h, 16)


def _mul32(h: tf.Tensor, constant: int) -> tf.Tensor:
    """(h * constant) mod 2**32 for 32-bit h, in two 16-bit halves so that no product
    leaves int64's range."""
    low = h * (constant & 0xFFFF)
    high = tf.bitwise.left_shift((h * (constant >> 16)) & 0xFFFF, 16)
    return (low + high) & _MASK32
