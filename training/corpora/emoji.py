"""Emoji (npm ``emoji-datasource-<style>``): 64x64 PNGs captioned with their names.

Twitter's drawings train the captioner; Apple's, Google's and Facebook's drawings of the
same emoji measure what it does on a style it has never seen (same split, same names).

Every image has several reference captions: the emoji's Unicode name and its short names
(``father christmas``, ``santa``). A skin-tone variant's references are its base's with
the tone named as Unicode's CLDR names it (``santa: medium-dark skin tone``).

The split holds out two kinds of images never seen in training, so the test figures say
what the captioner does with each (`CaptionedImage.held_out`):

- ``emoji``: whole emoji (a base and all its variants), picked by a hash of the base's
  image name: can it describe a picture it has never seen anything like?
- ``skin tone``: single variants of emoji that are in training, picked by a hash of the
  variant's image name: has it learnt to see and name the tone, in a combination of emoji
  and tone it has not seen? (Every tone is seen on other emoji.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import tarball_members
from training.corpora.splits import Splits

log = logging.getLogger(__name__)

#: The pinned npm packages by style: (name, version, sha256 of the tarball).
EMOJI_DATASOURCES = {
    "twitter": ("emoji-datasource-twitter", "16.0.0",
                "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877"),
    "apple": ("emoji-datasource-apple", "16.0.0",
              "b34d1665e136f163b0d4433318df151895b785186e8c729b2211b43017945075"),
    "google": ("emoji-datasource-google", "16.0.0",
               "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"),
    "facebook": ("emoji-datasource-facebook", "16.0.0",
                 "017038cf5a4e7fcf03dd9133cbed43d4c281c4b3ce7b927c7160261b92b8821e"),
}

#: An image goes to dev if sha256(its file name) mod 10 is 0, to test if it is 1; a base
#: emoji's bucket decides for it and all its variants.
DEV_BUCKET = 0
TEST_BUCKET = 1

NEW_EMOJI = "emoji"
NEW_SKIN_TONE = "skin tone"

#: Unicode's skin-tone modifiers (Fitzpatrick scale) by code point, named as in CLDR.
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


@dataclass(frozen=True)
class CaptionedImage:
    """One image file and its reference captions (at least one; the first is the main
    one). `held_out` says what is new about a dev or test image (`NEW_EMOJI`,
    `NEW_SKIN_TONE`); empty for training images and users' own files."""

    path: Path
    captions: tuple[str, ...]
    held_out: str = ""


def load_emoji(dir: Path | None = None, style: str = "twitter") -> Splits[CaptionedImage]:
    """Emoji images of one style (`EMOJI_DATASOURCES`) with their reference captions,
    split as the module says: by file name, so every style holds out the same emoji.

    ``dir`` holds ``emoji.json`` and ``img/<style>/64/``; by default the pinned npm package
    is fetched into the cache. Only entries with an image of that style that exists are
    kept.
    """
    if style not in EMOJI_DATASOURCES:
        raise CorpusError(f"unknown emoji style {style!r}: choose one of "
                          f"{', '.join(EMOJI_DATASOURCES)}")
    images = f"img/{style}/64"
    if dir is None:
        members = ["package/emoji.json", "package/LICENSE", "package/README.md",
                   f"package/{images}/"]
        root = tarball_members(*EMOJI_DATASOURCES[style], members) / "package"
    else:
        root = dir
    has_image = f"has_img_{style}"
    try:
        entries = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CorpusError(
            f"cannot read {root / 'emoji.json'} ({err}): point dir at an emoji-datasource "
            f"package directory, or omit it to fetch emoji-datasource-{style}"
        ) from err
    splits: Splits[CaptionedImage] = Splits([], [], [])
    by_bucket = {DEV_BUCKET: splits.dev, TEST_BUCKET: splits.test}

    def add(image: str, captions: tuple[str, ...], bucket: int, held_out: str) -> None:
        path = root / images / image
        if path.is_file():
            split = by_bucket.get(bucket, splits.train)
            split.append(CaptionedImage(path, captions, held_out if split is not
                                        splits.train else ""))

    for number, entry in enumerate(entries):
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("image"), str):
            raise CorpusError(
                f"{root / 'emoji.json'}: entry {number} has no 'name' and 'image' "
                "strings: fix that entry or use the unmodified package"
            )
        if not entry.get(has_image):
            continue
        names = references(entry)
        base_bucket = _bucket(entry["image"])
        add(entry["image"], names, base_bucket, NEW_EMOJI)
        for tones, variant in sorted((entry.get("skin_variations") or {}).items()):
            if not variant.get(has_image):
                continue
            tone = skin_tone(tones, f"{root / 'emoji.json'}: entry {number}")
            captions = tuple(f"{name}: {tone}" for name in names)
            if base_bucket in by_bucket:
                add(variant["image"], captions, base_bucket, NEW_EMOJI)
            else:
                add(variant["image"], captions, _bucket(variant["image"]), NEW_SKIN_TONE)
    if not splits.train:
        raise CorpusError(
            f"no {style} emoji images found in {root / images}: point dir at an "
            f"emoji-datasource-{style} package directory, or omit it"
        )
    log.info("%s emoji images from %s: %s", style, root, splits.summary())
    return splits


def references(entry: dict) -> tuple[str, ...]:
    """The entry's name and short names as captions: lower case, `_` and a `-` between
    letters read as spaces (``man-with-bunny-ears`` -> ``man with bunny ears``; ``-1``
    stays), duplicates dropped."""
    captions = [entry["name"].lower()]
    for short in entry.get("short_names") or []:
        spaced = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", short.lower().replace("_", " "))
        captions.append(" ".join(spaced.split()))
    return tuple(dict.fromkeys(c for c in captions if c))


def skin_tone(key: str, where: str) -> str:
    """``1F3FE`` -> ``medium-dark skin tone``; two tones (``1F3FB-1F3FF``, people holding
    hands) -> both, comma-separated, or one if they are the same."""
    try:
        tones = [SKIN_TONES[code.upper()] for code in key.split("-")]
    except KeyError as err:
        raise CorpusError(f"{where}: unknown skin tone {err.args[0]!r} in "
                          f"'skin_variations' (known: {', '.join(SKIN_TONES)})") from None
    return ", ".join(dict.fromkeys(tones))


def _bucket(image: str) -> int:
    return int.from_bytes(hashlib.sha256(image.encode()).digest()[:8]) % 10
