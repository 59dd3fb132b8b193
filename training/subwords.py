"""A run's SentencePiece vocabulary: trained once on its training texts and kept in the
run directory, so that a resumed run reads its texts with the same ids."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from model.tokenizer import SubwordTokenizer, TokenizerConfig, train_sentencepiece

log = logging.getLogger(__name__)


def load_or_train_tokenizer(run_dir: Path, texts: Iterable[str],
                            vocab_size: int) -> SubwordTokenizer:
    """Reuses `run_dir`'s SentencePiece model, or trains one on `texts` and keeps it."""
    path = run_dir / "sentencepiece.model"
    if path.exists():
        log.info("reusing %s (delete it, or use a new --run-dir, to train a new one)", path)
        return SubwordTokenizer(path.read_bytes())
    proto = train_sentencepiece(texts, TokenizerConfig(vocab_size=vocab_size))
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto)
    return SubwordTokenizer(proto)
