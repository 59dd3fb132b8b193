"""spaCy's English lexeme tables (PyPI ``spacy-lookups-data``): Brown clusters and unigram
log-probabilities of about a million words, the tagger's `--clusters spacy` features.

The tables are those of spaCy 2.2's English models (its lexemes' ``cluster`` and
``prob``), computed by Explosion on unannotated English text; a word with no reliable
cluster has cluster 0. Only the two tables are read: see ``model/word_clusters.py``.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import wheel_member

log = logging.getLogger(__name__)

SPACY_LOOKUPS_DATA = (
    "spacy-lookups-data", "1.0.5",
    "466f21f087e4144bc93800679437ec5a17be7d0888734b1ba880b3ecb0978bc6",
)  # fmt: skip

_MEMBER = "spacy_lookups_data/data/en_lexeme_{}.json.gz"


def _table(name: str) -> dict:
    path = wheel_member(*SPACY_LOOKUPS_DATA, _MEMBER.format(name))
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            table = json.load(file)
    except (OSError, ValueError) as err:
        raise CorpusError(f"cannot read {path} ({err}); delete it and rerun") from err
    if not isinstance(table, dict) or len(table) < 100_000:
        raise CorpusError(f"{path} is not spaCy's English lexeme table; delete it and rerun")
    return table


def spacy_lexemes_licence() -> Path:
    """The package's licence (MIT), which goes with every copy of its tables (a tagger
    export holding them included)."""
    version = SPACY_LOOKUPS_DATA[1]
    return wheel_member(*SPACY_LOOKUPS_DATA, f"spacy_lookups_data-{version}.dist-info/LICENSE")


def load_spacy_lexemes() -> tuple[dict[str, int], dict[str, float]]:
    """(word -> Brown cluster path as spaCy encodes it; word -> natural-log unigram
    probability), for each casing of a word the corpus had."""
    clusters, probabilities = _table("cluster"), _table("prob")
    # Words with no cluster at the table's lowest probability say nothing: left out.
    floor = min(probabilities.values())
    probabilities = {w: p for w, p in probabilities.items() if clusters.get(w) or p > floor}
    clusters = {w: c for w, c in clusters.items() if c}
    log.info("spaCy lexemes (%s %s): %s words, %s of them with a Brown cluster",
             *SPACY_LOOKUPS_DATA[:2], f"{len(probabilities):,}",
             f"{len(clusters):,}")
    return clusters, probabilities
