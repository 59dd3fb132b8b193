"""What a large unannotated English corpus says of a word, looked up in the graph.

Of a word it never saw in training, a tagger knows only the spelling; most of its errors
on such words are open-class words read as the wrong class. Brown clusters (Brown et
al. 1992) group words by the words around them in a corpus far larger than any tagged
one: `acacia`-like words share a cluster with nouns the tagger did see, so their
cluster's embedding, learnt on those, carries over (Koo et al. 2008 and Owoputi et al.
2013 use them so). Per token: its cluster, a coarser cluster (the first bits of its
path in the cluster tree, so that rare clusters share with their neighbours), and how
frequent the word is in that corpus (rounded negative log-probability), which tells
real English words from foreign words, typos and dialect spellings; all three for the
token as written and again in lower case, because a capital says little at the start of
a sentence: `Glaze` there is the verb `glaze`, and a title-case form much rarer than its
lower-case one is a common word, not a name.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

FEATURES = 6
"""Ids per token: cluster, cluster prefix, frequency bucket (0 = not in the tables), of
the token as written, then of its lower case."""

PREFIX_BITS = 6
"""Bits of a cluster's path that make its coarse cluster (64 of them)."""

FREQUENCY_BUCKETS = 32
"""Ids of the frequency feature: 1 + the rounded negative natural-log probability, capped."""


class WordClusters(tf.Module):
    """Tokens -> [n, FEATURES] int32 ids: cluster, cluster prefix, frequency bucket, of
    the token as written (the tables hold the casings a corpus has: `The` and `the`,
    `John`; a casing they lack is read as its lower case), then of its lower case.

    Args:
      clusters: word -> its Brown cluster's path as an integer whose lowest bit is the
        path's first (spaCy's encoding); 0 for no cluster.
      log_probabilities: word -> its natural-log unigram probability in the corpus.
    """

    def __init__(self, clusters: Mapping[str, int], log_probabilities: Mapping[str, float]):
        super().__init__(name="word_clusters")
        paths = sorted({path for path in clusters.values() if path})
        index = {path: i + 1 for i, path in enumerate(paths)}
        self.size = len(paths) + 1  # cluster ids, 0 (none) included
        packed: dict[str, int] = {}
        for word in set(clusters) | set(log_probabilities):
            path = clusters.get(word, 0)
            bucket = (min(1 + round(-log_probabilities[word]), FREQUENCY_BUCKETS - 1)
                      if word in log_probabilities else 0)
            prefix = 1 + (path & ((1 << PREFIX_BITS) - 1)) if path else 0
            packed[word] = (index.get(path, 0) << 16) | (prefix << 8) | bucket
        self.words = len(packed)  # for the log
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(packed), tf.string), tf.constant(list(packed.values()), tf.int64)),
            -1)

    @property
    def vocabulary_sizes(self) -> tuple[int, int, int]:
        """How many ids each feature has: cluster, prefix, frequency."""
        return self.size, (1 << PREFIX_BITS) + 1, FREQUENCY_BUCKETS

    def __call__(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] string -> ids [n, FEATURES] int32."""
        lower = tf.maximum(self.table.lookup(tf.strings.lower(tokens, "utf-8")), 0)
        found = self.table.lookup(tokens)
        found = tf.where(found < 0, lower, found)
        return tf.cast(tf.stack([found // 0x10000, found // 0x100 % 0x100, found % 0x100,
                                 lower // 0x10000, lower // 0x100 % 0x100, lower % 0x100],
                                axis=1), tf.int32)
