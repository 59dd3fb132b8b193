"""How raw text becomes words: the tagger's tokenisation rule, in the graph and in Python.

The rule follows how the Brown corpus (the tagger's training text) is tokenised, without
depending on its conventions; tokens are, leftmost first:

1. a title or month abbreviation with its period: ``Mr.``, ``Dr.``, ``Co.``, ``Jan.``;
2. initials, each a capital and a period: ``U.S.``, ``J.``, or two or more lower-case
   letters each with a period: ``e.g.``, ``p.m.``;
3. a number with inner separators, or a dollar amount, or a percentage: ``1,000``,
   ``3.5``, ``10:30``, ``1/2``, ``$5``, ``$1,500``, ``90%`` (Brown keeps ``$`` and ``%``
   on their number);
4. a word: letters and digits, with inner hyphens and apostrophes kept: ``don't``,
   ``Atlanta's``, ``long-term``, ``1960's``, ``o'clock`` (Brown never splits a clitic
   off its word);
5. ``--``, ``...``, two backquotes or two apostrophes (Brown's quotes); else any single
   character that is not whitespace: ``"``, ``(``, ``,``, ``'``.

Whitespace and control characters separate tokens and are never part of one. The
rule runs in the graph (RE2, through tensorflow-text's `regex_split`) and in Python
(`re`, to count tokens before a request is queued); the two patterns differ only in how
they name "letter or digit" and are tested to agree on random text. (On characters newer
than Python's Unicode tables, which RE2's may know as letters, the count can differ.)
"""

from __future__ import annotations

import re

import tensorflow as tf
import tensorflow_text as tf_text

PRETOKENIZED_SEPARATOR = "\x1f"
"""Joins a pre-tokenised input's tokens into one string (tokens must not contain it)."""

_ABBREVIATIONS = ("Mr|Mrs|Ms|Messrs|Mmes|Dr|Drs|St|Jr|Sr|Mt|Ft|Co|Corp|Inc|Ltd|Bros|Gen|Gov|"
                  "Sens?|Reps?|Rev|Prof|Lt|Col|Capt|Sgt|Maj|Adm|Av|Ave|Blvd|Rd|Jan|Feb|Mar|Apr|"
                  "Aug|Sept|Sep|Oct|Nov|Dec|Mo|Fig|Figs|Vol|vol|vs|etc|lb|lbs|ft|mm|cm|cu")
# Whitespace, as a character-class body both engines read alike: ASCII and C1 controls
# and space, and every character Python calls whitespace (str.isspace).
_SPACE = (r"\x00-\x20\x7f-\x9f"
          + "\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000")
_TEMPLATE = (
    rf"(?:{_ABBREVIATIONS})\."
    r"|(?:[A-Z]\.)+|(?:[a-z]\.){2,}"
    r"|\$?[0-9]+(?:[.,:/][0-9]+)+%?|\$[0-9]+|\$\.[0-9]+|[0-9]+%"
    "|{alnum}+(?:['\u2019-]{alnum}+)*"  # inner apostrophes, straight or curly
    r"|--|\.\.\.|``|''"
    rf"|[^{_SPACE}]"
)
RE2_PATTERN = _TEMPLATE.replace("{alnum}", r"[\pL\pN]")
PYTHON_PATTERN = _TEMPLATE.replace("{alnum}", r"[^\W_]")
_PYTHON = re.compile(PYTHON_PATTERN)
_NOT_SPACE = re.compile(f"[^{_SPACE}]")


def tokenize_text(text: str) -> list[str]:
    """The rule in Python: one text -> its tokens."""
    return _PYTHON.findall(text)


def has_tokens(text: str) -> bool:
    """Whether the rule finds a token in `text`, without splitting it: it does if and
    only if a character is not whitespace (the rule's last case takes any such one)."""
    return _NOT_SPACE.search(text) is not None


def tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
    """The rule in the graph: texts [batch] -> tokens [batch, (tokens)]."""
    # regex_split reads each text only up to its first NUL: make NULs spaces first.
    texts = tf.strings.regex_replace(texts, r"\x00", " ")
    return tf_text.regex_split(texts, delim_regex_pattern=f"{RE2_PATTERN}|[{_SPACE}]+",
                               keep_delim_regex_pattern=RE2_PATTERN)


def split_pretokenized(texts: tf.Tensor) -> tf.RaggedTensor:
    """Pre-tokenised inputs, tokens joined by `PRETOKENIZED_SEPARATOR`: [batch] -> tokens
    [batch, (tokens)], exactly as the client sent them."""
    return tf.strings.split(texts, sep=PRETOKENIZED_SEPARATOR)
