"""The character LM's vocabulary: Unicode characters <-> ids, in the graph.

Ids 0..3 are special (PAD, UNK, BOS, EOS, as the subword tokenizer's); the characters of
the training text follow, most frequent first. A character never seen in training (or
seen fewer than `min_count` times) reads as UNK, which training feeds in place of a small
share of input characters so that the model has learnt to carry on after one; the model
never writes UNK, BOS or PAD, and EOS only where a generation reaches its length.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

SPECIALS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
FIRST_CHAR_ID = len(SPECIALS)
SHOWN_FOR_SPECIAL = "\ufffd"  # what decoding writes for a special id (never generated)


def alphabet_of(text: str, min_count: int = 1) -> str:
    """The characters of `text` seen at least `min_count` times, most frequent first
    (ties in code point order, so the alphabet is the same on every run)."""
    counts = collections.Counter(text)
    kept = sorted((c for c, n in counts.items() if n >= min_count),
                  key=lambda c: (-counts[c], c))
    return "".join(kept)


class Characters(tf.Module):
    """`alphabet`'s characters as ids FIRST_CHAR_ID..., in the graph and in numpy."""

    def __init__(self, alphabet: str):
        super().__init__(name="characters")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("the alphabet has repeated characters")
        self.alphabet = alphabet
        self.size = FIRST_CHAR_ID + len(alphabet)
        codepoints = [ord(c) for c in alphabet]
        self._ids = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(codepoints, tf.int32), tf.range(FIRST_CHAR_ID, self.size)),
            default_value=UNK_ID)
        self._codepoints = tf.constant([ord(SHOWN_FOR_SPECIAL)] * FIRST_CHAR_ID + codepoints,
                                       tf.int32)
        self._numpy = {c: i for i, c in enumerate(alphabet, FIRST_CHAR_ID)}

    def encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[batch] UTF-8 strings -> [batch, (chars)] int32 ids (invalid UTF-8 reads as
        U+FFFD, which is UNK unless the training text had it)."""
        codepoints = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        return tf.ragged.map_flat_values(self._ids.lookup, codepoints)

    def decode(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """[batch, (chars)] ids -> [batch] UTF-8 strings."""
        codepoints = tf.ragged.map_flat_values(lambda i: tf.gather(self._codepoints, i), ids)
        return tf.strings.unicode_encode(codepoints, "UTF-8")

    def encode_numpy(self, text: str) -> np.ndarray:
        """A (long) text -> [chars] int32 ids, for building training pipelines."""
        return np.fromiter((self._numpy.get(c, UNK_ID) for c in text), np.int32, len(text))

