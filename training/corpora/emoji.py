"""Twitter emoji (npm ``emoji-datasource-twitter``): 64x64 PNGs captioned with their names.

Skin-tone variants get their base emoji's caption (the dataset names only the base), and
a base and its variants always share a split: they are near-identical images, so splitting
them apart would put test images into training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import tarball_members
from training.corpora.splits import Splits

log = logging.getLogger(__name__)

EMOJI_DATASOURCE_TWITTER = (
    "emoji-datasource-twitter", "16.0.0",
    "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877",
)  # fmt: skip
_IMAGES = "img/twitter/64"
_MEMBERS = ["package/emoji.json", "package/LICENSE", "package/README.md", f"package/{_IMAGES}/"]

#: A base emoji goes to dev if sha256(its image name) mod 10 is 0, to test if it is 1.
DEV_BUCKET = 0
TEST_BUCKET = 1


@dataclass(frozen=True)
class CaptionedImage:
    """One image file and its caption."""

    path: Path
    caption: str


def load_emoji(dir: Path | None = None) -> Splits[CaptionedImage]:
    """Emoji images captioned with their lowercased names (e.g. ``hash key``).

    ``dir`` holds ``emoji.json`` and ``img/twitter/64/``; by default the pinned npm package
    is fetched into the cache. Only entries with a Twitter image that exists are kept.
    """
    root = tarball_members(*EMOJI_DATASOURCE_TWITTER, _MEMBERS) / "package" if dir is None else dir
    try:
        entries = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CorpusError(
            f"cannot read {root / 'emoji.json'} ({err}): point dir at an emoji-datasource "
            "package directory, or omit it to fetch emoji-datasource-twitter"
        ) from err
    splits: Splits[CaptionedImage] = Splits([], [], [])
    by_bucket = {DEV_BUCKET: splits.dev, TEST_BUCKET: splits.test}
    for number, entry in enumerate(entries):
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("image"), str):
            raise CorpusError(
                f"{root / 'emoji.json'}: entry {number} has no 'name' and 'image' "
                "strings: fix that entry or use the unmodified package"
            )
        if not entry.get("has_img_twitter"):
            continue
        variants = [
            v for v in (entry.get("skin_variations") or {}).values() if v.get("has_img_twitter")
        ]
        bucket = int.from_bytes(hashlib.sha256(entry["image"].encode()).digest()[:8]) % 10
        split = by_bucket.get(bucket, splits.train)
        for image in [entry["image"], *(v["image"] for v in variants)]:
            path = root / _IMAGES / image
            if path.is_file():
                split.append(CaptionedImage(path=path, caption=entry["name"].lower()))
    if not splits.train:
        raise CorpusError(
            f"no Twitter emoji images found in {root / _IMAGES}: point dir at an "
            "emoji-datasource-twitter package directory, or omit it"
        )
    log.info("emoji images from %s: %s", root, splits.summary())
    return splits
