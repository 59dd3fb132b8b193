"""Which open-class tags a dictionary allows a word, looked up in the graph.

Half of a tagger's errors on words never seen in training are open-class words read as
the wrong class from their suffix alone (`thrives` as a noun, `nitroglycerine` as an
adjective). A dictionary of lemmas (WordNet's, in practice) settles most of them: per
token, a bit for each of NOUN, VERB, ADJ and ADV that the dictionary lists for the word
or, after WordNet's own detachment rules for regular inflections (its "morphy": `thrives`
-> `thrive`, `boxes` -> `box`, `tangier` -> `tangy`), for its lemma; and the same four
bits for the last part of a hyphenated compound (`first-floor` -> `floor`), whose head
it usually is. The bits are features: the model learns how far to trust them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import tensorflow as tf

CLASSES = ("NOUN", "VERB", "ADJ", "ADV")
"""The open classes a lexicon lists, in feature order (the universal tag names)."""

RULES: tuple[tuple[str, str, str], ...] = (
    ("NOUN", "s", ""), ("NOUN", "ses", "s"), ("NOUN", "xes", "x"), ("NOUN", "zes", "z"),
    ("NOUN", "ches", "ch"), ("NOUN", "shes", "sh"), ("NOUN", "men", "man"),
    ("NOUN", "ies", "y"),
    ("VERB", "s", ""), ("VERB", "ies", "y"), ("VERB", "es", "e"), ("VERB", "es", ""),
    ("VERB", "ed", "e"), ("VERB", "ed", ""), ("VERB", "ing", "e"), ("VERB", "ing", ""),
    ("ADJ", "er", ""), ("ADJ", "est", ""), ("ADJ", "er", "e"), ("ADJ", "est", "e"),
    ("ADJ", "ier", "y"), ("ADJ", "iest", "y"),
)  # fmt: skip
"""WordNet's detachment rules (morphy(7WN)): class, inflectional suffix, what replaces it
in the lemma; a rule counts only if the lemma it gives is listed in its class. The last
two stand in for the part of WordNet's exception list `adj.exc` that is regular
(`tangier` -> `tangy`); the rest of its exception lists (`went`, `mice`) are not read:
such frequent words are in any training text."""

DOUBLED = "bdgmnprt"
"""A stem ending in one of these doubled (`grimm`, `stopp`) is also tried with it single
after the suffixes that double it (-ed, -ing, -er, -est), as morphy's exception lists
would (`grimmer` -> `grim`, `stopped` -> `stop`)."""

FEATURES = 2 * len(CLASSES)
"""Features per token: the word's classes, then its last hyphen-separated part's."""


class Lexicon(tf.Module):
    """Tokens -> the open classes a dictionary allows them, as 0/1 features.

    Args:
      lemmas: class (one of `CLASSES`) -> its lemmas; matched case-insensitively,
        entries holding a space or an underscore (multi-word ones) are left out.
    """

    def __init__(self, lemmas: Mapping[str, Iterable[str]]):
        super().__init__(name="lexicon")
        masks: dict[str, int] = {}
        for bit, name in enumerate(CLASSES):
            for lemma in lemmas.get(name, ()):
                if " " not in lemma and "_" not in lemma:
                    key = lemma.lower()
                    masks[key] = masks.get(key, 0) | 1 << bit
        self.size = len(masks)  # lemmas in the table, for the log
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(masks), tf.string),
            tf.constant(list(masks.values()), tf.int64)), 0)

    def __call__(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] string -> features [n, FEATURES] float32."""
        words = tf.strings.lower(tokens, encoding="utf-8")
        # A compound's head; "" (which no rule matches: no lookups) for other words.
        heads = tf.where(tf.strings.regex_full_match(words, ".*[^-].*-.+"),
                         tf.strings.regex_replace(words, "^.*-", ""), "")
        found = tf.reshape(self.classes(tf.concat([words, heads], 0)), [2, -1, len(CLASSES)])
        return tf.cast(tf.concat([found[0], found[1]], axis=1), tf.float32)

    def classes(self, words: tf.Tensor) -> tf.Tensor:
        """Lower-cased words [n] -> [n, len(CLASSES)] bool: the classes listing the word
        or the lemma a rule makes of it. The rules' suffixes are matched on a [rules, n]
        grid at once (byte offsets: the suffixes are ASCII); only the lemmas of the
        (rule, word) pairs that match are built and looked up, two or three per word."""
        rules, n = len(RULES), tf.size(words)
        grid = tf.broadcast_to(words[None], [rules, n])
        suffix_size = tf.broadcast_to([[len(suffix)] for _, suffix, _ in RULES], [rules, n])
        cut = tf.strings.length(grid) - suffix_size  # where the suffix would start
        ending = tf.strings.substr(grid, tf.maximum(cut, 0), suffix_size)
        pairs = tf.where((cut >= 0) & tf.equal(ending, [[suffix] for _, suffix, _ in RULES]))
        rule, word = pairs[:, 0], pairs[:, 1]  # [k] each: the matching pairs
        stem_size = tf.gather_nd(cut, pairs)
        stems = tf.strings.substr(tf.gather(words, word), tf.zeros_like(stem_size), stem_size)
        lemmas = tf.strings.join([stems, tf.gather([r for _, _, r in RULES], rule)])
        # The stem with a final doubled consonant made single, where the rule allows it.
        size = tf.strings.length(stems)
        last = tf.strings.substr(stems, tf.maximum(size - 1, 0), tf.minimum(size, 1))
        before = tf.strings.substr(stems, tf.maximum(size - 2, 0), tf.minimum(size, 1))
        doubled = ((size >= 2) & tf.equal(last, before)
                   & tf.strings.regex_full_match(last, f"[{DOUBLED}]")
                   & tf.gather([not r and s in ("ed", "ing", "er", "est")
                                for _, s, r in RULES], rule))
        single = tf.strings.substr(stems, tf.zeros_like(size), tf.maximum(size - 1, 0))
        rule_class = tf.gather(tf.one_hot([CLASSES.index(name) for name, _, _ in RULES],
                                          len(CLASSES), on_value=True, off_value=False), rule)
        hits = rule_class & (self._listed(lemmas)
                             | (doubled[:, None] & self._listed(tf.where(doubled, single, ""))))
        by_word = tf.math.unsorted_segment_max(tf.cast(hits, tf.int32), word, n) > 0
        return self._listed(words) | by_word

    def _listed(self, words: tf.Tensor) -> tf.Tensor:
        """words [...] -> [..., len(CLASSES)] bool: the classes the table lists them in."""
        bits = tf.constant([1 << i for i in range(len(CLASSES))], tf.int64)
        return self.table.lookup(words)[..., None] & bits != 0
