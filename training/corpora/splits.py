"""Train/dev/test splits: one container shared by every corpus loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Splits(Generic[T]):
    """The three splits of one corpus, each in a deterministic order.

    Every loader returns this, so training code never has to know how a corpus was split.
    """

    train: list[T]
    dev: list[T]
    test: list[T]

    def summary(self) -> str:
        """Split sizes for logs, e.g. ``train=29,314 dev=896 test=892``."""
        return f"train={len(self.train):,} dev={len(self.dev):,} test={len(self.test):,}"
