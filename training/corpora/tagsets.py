"""Brown tags -> the 12-tag universal tagset of Petrov, Das and McDonald (2012).

The table maps Brown's 87 base tags (Francis and Kucera 1979); `to_universal` first
takes a decorated or compound tag apart:

* ``-tl`` (word in a title), ``-hl`` (in a headline) and ``-nc`` (cited word) say where
  a word stands, not what it is: they are dropped (``nn-tl`` -> ``nn`` -> NOUN).
* ``fw-`` marks a foreign word (``fw-nn``, ``fw-in``): X whatever follows, since its
  part of speech is that of another language (the UD convention for foreign words).
* A compound tag (``pps+bez`` "he's", ``md+hv`` "would've", ``vb+to`` "wanna") is one
  token holding two words; a token gets one tag, that of its first word (``pps+bez`` ->
  PRON, ``ppss+md`` "I'd" -> PRON), which is also the word a reader sees first.
* A trailing ``*`` is Brown's negation: ``do*`` ("don't"), ``bez*`` ("isn't") are verbs,
  so the ``*`` is dropped; ``*`` alone ("not", "n't") is PRT, as in Petrov et al.
* ``$`` marks the possessive (``nn$`` "man's", ``pp$`` "his"): same tag as without.
* A handful of corpus typos (``at-t``, ``ber-n``) fall back to the tag before the hyphen.
"""

from __future__ import annotations

import re

UNIVERSAL_TAGS = ("NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT",
                  ".", "X")  # fmt: skip

POSSESSIVE = "pos"  # a possessive "'s" split off its word
CURRENCY = "sym"  # a currency sign split off its amount

_BROWN_BASE: dict[str, str] = {
    # punctuation
    ".": ".", ",": ".", ":": ".", "(": ".", ")": ".", "--": ".", "'": ".", "''": ".",
    "``": ".",
    # determiners, pre-quantifiers and quantifiers
    "at": "DET", "abx": "DET", "dt": "DET", "dti": "DET", "dts": "DET",
    "dtx": "DET", "wdt": "DET", "ex": "DET",  # existential "there"
    "abn": "PRT", "abl": "PRT",  # "all", "half"; "quite", "rather" (Petrov et al.)
    # nouns (proper, adverbial "home"/"today", nominal pronouns "everybody")
    "nn": "NOUN", "nns": "NOUN", "np": "NOUN", "nps": "NOUN", "nr": "NOUN", "nrs": "NOUN",
    "pn": "NOUN",
    # pronouns
    "pp": "PRON", "pp$": "PRON", "pp$$": "PRON", "ppl": "PRON", "ppls": "PRON", "ppo": "PRON",
    "pps": "PRON", "ppss": "PRON", "wp": "PRON", "wpo": "PRON", "wps": "PRON",
    # verbs: lexical, be, have, do, modals
    "vb": "VERB", "vbd": "VERB", "vbg": "VERB", "vbn": "VERB", "vbz": "VERB",
    "be": "VERB", "bed": "VERB", "bedz": "VERB", "beg": "VERB", "bem": "VERB", "ben": "VERB",
    "ber": "VERB", "bez": "VERB", "hv": "VERB", "hvd": "VERB", "hvg": "VERB", "hvn": "VERB",
    "hvz": "VERB", "do": "VERB", "dod": "VERB", "doz": "VERB", "md": "VERB",
    # adjectives; ordinals ("first") and post-determiners ("many", "other", "few"), as
    # in Petrov et al. and UD
    "ap": "ADJ", "jj": "ADJ", "jjr": "ADJ", "jjs": "ADJ", "jjt": "ADJ", "od": "ADJ",
    # adverbs, qualifiers ("very"), wh-adverbs
    "rb": "ADV", "rbr": "ADV", "rbt": "ADV", "rn": "ADV", "ql": "ADV", "qlp": "ADV",
    "wql": "ADV", "wrb": "ADV",
    # adpositions (subordinating conjunctions too, as in Petrov et al.), conjunctions
    "in": "ADP", "cs": "ADP", "cc": "CONJ",
    # particles: adverbial particles ("up"), infinitival "to", negation
    "rp": "PRT", "to": "PRT", "*": "PRT",
    # numbers; interjections and unclassified words
    "cd": "NUM", "uh": "X", "nil": "X",
    # never in Brown: what training variants split off a Brown token the way other
    # corpora (the Penn Treebank) tokenise, "Atlanta's" -> "Atlanta" "'s", "$5" -> "$" "5"
    POSSESSIVE: "PRT", CURRENCY: ".",
}  # fmt: skip

_DECORATION = re.compile(r"-(?:tl|hl|nc)")


def base_tag(tag: str) -> str:
    """A Brown tag without its decorations and compound part: ``np$-tl`` -> ``np``,
    ``pps+bez`` -> ``pps``, ``do*`` -> ``do``; ``*`` stays ``*``."""
    tag = _DECORATION.sub("", tag.lower()).split("+")[0]
    if tag != "*":
        tag = tag.rstrip("*")
    if tag not in _BROWN_BASE and tag.endswith("$"):
        tag = tag[:-1]
    return tag


def to_universal(tag: str) -> str:
    """One Brown tag (any decoration) -> its universal tag; KeyError if not Brown's."""
    if tag.lower().startswith("fw-"):
        return "X"
    base = base_tag(tag)
    if base not in _BROWN_BASE and "-" in base:  # corpus typos: "at-t", "ber-n"
        base = base.split("-")[0]
    try:
        return _BROWN_BASE[base]
    except KeyError:
        raise KeyError(f"{tag!r} is not a Brown tag (base {base!r})") from None
