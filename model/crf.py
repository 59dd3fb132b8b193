"""A linear-chain conditional random field over a tagger's per-token tag scores.

A softmax picks each token's tag on its own; a CRF scores whole tag sequences, the
tokens' scores plus a learnt score for each pair of neighbouring tags (and for the first
and last tag), so it can rule out sequences no sentence has (Lafferty et al. 2001; on
a BiLSTM, Huang et al. 2015). Training maximises the log-likelihood of the gold sequence
(the forward algorithm gives the normaliser); decoding finds the best sequence (Viterbi)
and each chosen tag's marginal probability (the normaliser's gradient with respect to the
token scores is exactly the marginals, so no hand-written backward pass).

Every function takes `scores` [batch, time, tags] and `mask` [batch, time] bool, True on
a sentence's tokens, which come first (padding only after them).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="recur")
class CRF(keras.layers.Layer):
    """The transition scores of `num_tags` tags: from tag i to tag j, before the first
    tag, after the last."""

    def __init__(self, num_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags
        self.transitions = self.add_weight(shape=(num_tags, num_tags), initializer="zeros",
                                           name="transitions")
        self.start = self.add_weight(shape=(num_tags,), initializer="zeros", name="start")
        self.end = self.add_weight(shape=(num_tags,), initializer="zeros", name="end")

    def _weights(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return (tf.cast(self.transitions, tf.float32), tf.cast(self.start, tf.float32),
                tf.cast(self.end, tf.float32))

    def log_likelihood(self, scores: tf.Tensor, tags: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """log p(tags | sentence) [batch]; tags [batch, time] int (any value at padding);
        0 for an empty sentence."""
        return self.path_score(scores, tags, mask) - self.log_normalizer(scores, mask)

    def path_score(self, scores: tf.Tensor, tags: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """The unnormalised score of `tags` [batch, time]: [batch]."""
        transitions, start, end = self._weights()
        scores = tf.cast(scores, tf.float32)
        tags = tf.cast(tags, tf.int32)
        real = tf.cast(mask, tf.float32)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        token = tf.reduce_sum(tf.gather(scores, tags, batch_dims=2) * real, axis=1)
        pairs = tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))
        between = tf.reduce_sum(pairs * real[:, 1:], axis=1)
        first = tf.gather(start, tags[:, 0])
        last = tf.gather(end, tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1))
        return tf.where(lengths > 0, token + between + first + last, 0.0)

    def log_normalizer(self, scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """log of the sum of exp(path score) over every tag sequence: [batch] (the forward
        algorithm); 0 for an empty sentence."""
        transitions, start, end = self._weights()
        scores = tf.cast(scores, tf.float32)

        def forward(alpha, step):  # alpha [batch, tags]: log-sum over paths ending here
            score, real = step
            moved = tf.reduce_logsumexp(alpha[:, :, None] + transitions, axis=1) + score
            return tf.where(real[:, None], moved, alpha)

        alpha = start + scores[:, 0]
        steps = (tf.transpose(scores[:, 1:], [1, 0, 2]), tf.transpose(mask[:, 1:]))
        alpha = tf.foldl(forward, steps, initializer=alpha)
        normalizer = tf.reduce_logsumexp(alpha + end, axis=1)
        return tf.where(tf.reduce_any(mask, axis=1), normalizer, 0.0)

    def marginals(self, scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """p(token t has tag k | sentence): [batch, time, tags] (0 at padding)."""
        scores = tf.cast(scores, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(scores)
            normalizer = tf.reduce_sum(self.log_normalizer(scores, mask))
        return tape.gradient(normalizer, scores) * tf.cast(mask, tf.float32)[:, :, None]

    def decode(self, scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """The best tag sequence (Viterbi): [batch, time] int32 (0 at padding)."""
        transitions, start, end = self._weights()
        scores = tf.cast(scores, tf.float32)
        batch, tags = tf.shape(scores)[0], self.num_tags
        stay = tf.broadcast_to(tf.range(tags), [batch, tags])

        def forward(carry, step):  # best [batch, tags]: best path score ending here
            best, _ = carry
            score, real = step
            candidates = best[:, :, None] + transitions  # [batch, from, to]
            moved = tf.reduce_max(candidates, axis=1) + score
            back = tf.argmax(candidates, axis=1, output_type=tf.int32)
            # Padding keeps the score and points each tag to itself.
            return tf.where(real[:, None], moved, best), tf.where(real[:, None], back, stay)

        first = start + scores[:, 0]
        steps = (tf.transpose(scores[:, 1:], [1, 0, 2]), tf.transpose(mask[:, 1:]))
        best, pointers = tf.scan(forward, steps, initializer=(first, stay))  # [time-1, ...]
        final = tf.concat([first[None], best], axis=0)[-1]
        last = tf.argmax(final + end, axis=1, output_type=tf.int32)

        def backward(tag, back):  # back [batch, tags]: the tag before each tag
            return tf.gather(back, tag, batch_dims=1)

        # From the last token back: the tag before it, and before that, ...
        earlier = tf.scan(backward, pointers[::-1], initializer=last)[::-1]  # [time-1, b]
        path = tf.concat([tf.transpose(earlier), last[:, None]], axis=1)
        return tf.where(mask, path, 0)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_tags": self.num_tags}
