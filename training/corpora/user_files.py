"""Readers for users' own corpus files, with errors that name the file and line to fix.

Every task can train on the user's data instead of the built-in corpora; these readers
define the accepted formats (all UTF-8, a BOM is tolerated, blank lines are skipped).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from training.corpora.cache import CorpusError
from training.corpora.emoji import CaptionedImage
from training.corpora.splits import Splits

T = TypeVar("T")

_CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps",
                   "misc")  # fmt: skip


def read_text(path: Path) -> str:
    """The whole file as text with ``\\n`` line ends (for the character language model)."""
    text = "".join(line + "\n" for _, line in _lines(path))
    if not text.strip():
        raise CorpusError(f"{path}: the file is empty: give a text file with some content")
    return text


def read_parallel_tsv(path: Path) -> list[tuple[str, str]]:
    """Translation pairs, one ``source<TAB>target`` per line."""
    pairs = []
    for number, line in _content_lines(path):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise _line_error(
                path, number, line, "expected 'source<TAB>target' (one tab, both sides non-empty)"
            )
        pairs.append((fields[0], fields[1]))
    return _non_empty(path, pairs)


def read_tagged(path: Path) -> list[list[tuple[str, str]]]:
    """Tagged sentences, one per line as ``word/tag`` tokens (split on the last ``/``).

    Tags are kept as written, so any tagset works.
    """
    sentences = []
    for number, line in _content_lines(path):
        sentence = []
        for token in line.split():
            word, _, tag = token.rpartition("/")
            if not word or not tag:
                raise _line_error(path, number, line, f"token {token!r} is not 'word/tag'")
            sentence.append((word, tag))
        sentences.append(sentence)
    return _non_empty(path, sentences)


def read_conllu(path: Path, column: str = "upos") -> list[list[tuple[str, str]]]:
    """Tagged sentences from CoNLL-U: ``(FORM, <column>)`` for each word.

    Comments, multiword-token ranges (``1-2``) and empty nodes (``1.1``) are skipped;
    sentences end at blank lines.
    """
    if column not in _CONLLU_COLUMNS[2:]:
        raise CorpusError(
            f"unknown CoNLL-U column {column!r}: use one of "
            f"{', '.join(_CONLLU_COLUMNS[2:])} (usually upos or xpos)"
        )
    index = _CONLLU_COLUMNS.index(column)
    sentences: list[list[tuple[str, str]]] = []
    sentence: list[tuple[str, str]] = []
    for number, line in _lines(path):
        if not line.strip():
            if sentence:
                sentences.append(sentence)
            sentence = []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != len(_CONLLU_COLUMNS):
            raise _line_error(
                path, number, line, f"expected 10 tab-separated columns, found {len(fields)}"
            )
        if "-" in fields[0] or "." in fields[0]:
            continue
        if not fields[0].isdigit():
            raise _line_error(path, number, line, f"ID {fields[0]!r} is not a word number")
        if fields[index] == "_":
            raise _line_error(
                path,
                number,
                line,
                f"the {column} column is empty ('_'): use "
                "a column this file fills in (e.g. column='upos')",
            )
        sentence.append((fields[1], fields[index]))
    if sentence:
        sentences.append(sentence)
    return _non_empty(path, sentences)


def read_captions(path: Path, image_dir: Path | None = None) -> list[CaptionedImage]:
    """Captioned images from a COCO-style captions JSON (``*.json``) or a tab-separated
    file (anything else), in the file's order; an image's captions are its references.

    TSV: one ``image_path<TAB>caption`` per line; an image on several lines has several
    captions. COCO: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
    ``caption``); images without a caption are skipped. Relative paths are resolved
    against `image_dir`, by default the captions file's directory; every image must exist.
    """
    root = image_dir or path.parent
    if path.suffix.lower() == ".json":
        return _non_empty(path, _read_coco(path, root))
    captions: dict[Path, list[str]] = {}
    for number, line in _content_lines(path):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise _line_error(path, number, line, "expected 'image_path<TAB>caption'")
        image = (root / fields[0]).resolve()
        if not image.is_file():
            raise _line_error(path, number, line, _missing(image, root))
        captions.setdefault(image, []).append(fields[1])
    return _non_empty(path, [CaptionedImage(image, tuple(dict.fromkeys(texts)))
                             for image, texts in captions.items()])


def _read_coco(path: Path, root: Path) -> list[CaptionedImage]:
    text = "\n".join(line for _, line in _lines(path))
    try:
        data = json.loads(text)
        files = {image["id"]: str(image["file_name"]) for image in data["images"]}
        annotations = [(a["image_id"], str(a["caption"])) for a in data["annotations"]]
    except ValueError as err:
        raise CorpusError(f"{path}: not valid JSON ({err}): check the file") from err
    except (KeyError, TypeError) as err:
        raise CorpusError(
            f"{path}: not a COCO captions file (missing {err}): it needs 'images' with 'id' "
            "and 'file_name', and 'annotations' with 'image_id' and 'caption'") from err
    captions: dict[object, list[str]] = {}
    for number, (image_id, caption) in enumerate(annotations):
        if image_id not in files:
            raise CorpusError(f"{path}: annotation {number} is for image id {image_id!r}, "
                              "which 'images' does not list: add the image or remove it")
        if caption.strip():
            captions.setdefault(image_id, []).append(" ".join(caption.split()))
    images = []
    for image_id, file_name in files.items():
        image = (root / file_name).resolve()
        if image_id in captions and not image.is_file():
            raise CorpusError(f"{path}: {_missing(image, root)}")
        if image_id in captions:
            images.append(CaptionedImage(image, tuple(dict.fromkeys(captions[image_id]))))
    return images


def _missing(image: Path, root: Path) -> str:
    return f"image {image} does not exist: fix the path (relative paths start at {root})"


def split_fraction(
    items: Sequence[T], dev: float = 0.1, test: float = 0.1, seed: int = 0
) -> Splits[T]:
    """Deterministic dev/test split for files without a natural one.

    Items are ranked by a hash of ``seed`` and their content, so the split does not depend
    on file order, identical items (duplicate lines) always land in the same split, and
    adding items moves few others. Each split keeps the items' original order.
    """
    if dev < 0 or test < 0 or dev + test >= 1:
        raise ValueError(f"need dev >= 0, test >= 0 and dev + test < 1, got {dev} and {test}")
    n_dev = max(1, round(len(items) * dev)) if dev else 0
    n_test = max(1, round(len(items) * test)) if test else 0
    if n_dev + n_test >= len(items):
        raise CorpusError(
            f"{len(items)} items are too few to hold out {dev:.0%} for dev and {test:.0%} for "
            "test: add data, or give separate dev/test files"
        )
    keys = [hashlib.sha256(f"{seed}\0{item!r}".encode()).digest() for item in items]
    ranked = sorted(range(len(items)), key=lambda i: (keys[i], i))
    split_of = [0] * len(items)  # 0 train, 1 dev, 2 test
    previous, split = b"", 0
    for rank, i in enumerate(ranked):
        if keys[i] != previous:  # a run of duplicates stays with its first copy
            previous = keys[i]
            split = 1 if rank < n_dev else 2 if rank < n_dev + n_test else 0
        split_of[i] = split
    splits = Splits(
        train=[x for x, s in zip(items, split_of, strict=True) if s == 0],
        dev=[x for x, s in zip(items, split_of, strict=True) if s == 1],
        test=[x for x, s in zip(items, split_of, strict=True) if s == 2],
    )
    if not splits.train:
        raise CorpusError(
            f"all {len(items)} items are duplicates of a few held-out ones, leaving no "
            "training data: add varied data, or give separate dev/test files"
        )
    return splits


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` without line ends; bad UTF-8 is reported with its line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path} ({err.strerror}): check the path") from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CorpusError(
            f"{path}:{line}: not valid UTF-8: re-save the file as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from err
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line.removesuffix("\r")


def _content_lines(path: Path) -> Iterator[tuple[int, str]]:
    return ((number, line) for number, line in _lines(path) if line.strip())


def _line_error(path: Path, number: int, line: str, problem: str) -> CorpusError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return CorpusError(f"{path}:{number}: {problem}; fix or remove this line: {shown!r}")


def _non_empty(path: Path, items: list[T]) -> list[T]:
    if not items:
        raise CorpusError(f"{path}: no data found: check that this is the right file")
    return items
