"""Where fetched corpora live, and the one error type the corpus layer raises."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The corpus cache: ``$RECUR_CACHE`` if set, else ``~/.cache/recur``.

    Corpora are large and must never land in git, so they go to a per-user cache that
    several checkouts (and several training runs) share.
    """
    configured = os.environ.get("RECUR_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "recur"


class CorpusError(RuntimeError):
    """A corpus could not be fetched or parsed.

    The message always says what to do next (what to install, which file to put where,
    which line of the user's file to fix), because the reader is someone running training
    on a laptop, not someone debugging this package.
    """
