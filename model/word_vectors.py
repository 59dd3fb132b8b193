"""Pre-trained word vectors, looked up in the graph: what a large unannotated corpus
says of a word the tagger never saw.

A tagger trained on Brown's million words meets, in other text, words Brown lacks; of
those it knows the spelling and what a dictionary lists. A word vector learnt from
billions of words of other text (GloVe) places `acacia` near the trees and `prospers`
near the verbs the tagger did see, and the recurrent layers learn, on training words,
what each region of that space means for a tag. The vectors are fixed: a training word
and an unseen one are read in the same space. Per token, the vector of its lower case,
else of it without a possessive `'s` (Brown writes `Atlanta's` as one token; GloVe's
corpus split it off), else of the last part of a hyphenated compound (`first-floor` ->
`floor`), else zeros; plus a 0/1 feature saying whether one was found.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf


class WordVectors(tf.Module):
    """Tokens -> [n, dim + 1] float32: the found vector (zeros if none), then 1 if one
    was found.

    Args:
      words: the vectors' words, lower case.
      vectors: [words, dim], any float dtype (kept as given: float16 halves the export).
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        super().__init__(name="word_vectors")
        if len(words) != len(vectors):
            raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
        self.words = len(words)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(words), tf.string), tf.range(1, len(words) + 1, dtype=tf.int64)),
            0)
        # Row 0: no vector.
        self.vectors = tf.Variable(np.concatenate([np.zeros_like(vectors[:1]), vectors]),
                                   trainable=False, name="vectors")

    @property
    def features(self) -> int:
        return int(self.vectors.shape[1]) + 1

    def __call__(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] string -> [n, dim + 1] float32."""
        lower = tf.strings.lower(tokens, "utf-8")
        stem = tf.strings.regex_replace(lower, r"(.)'s?$", r"\1")
        row = self.table.lookup(lower)
        for fallback in (stem, tf.strings.regex_replace(stem, r"^.*-(.)", r"\1")):
            row = tf.where(row > 0, row, self.table.lookup(fallback))
        vectors = tf.cast(tf.gather(self.vectors, row), tf.float32)
        return tf.concat([vectors, tf.cast(row > 0, tf.float32)[:, None]], axis=1)
