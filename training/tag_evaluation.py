"""Tagging figures: token accuracy (all words and words unseen in training), sentence
accuracy, per-tag confusion as a PNG."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Sentence = list[tuple[str, str]]


@dataclass
class TagScores:
    gold: list[str]  # every token's tag, sentences concatenated
    predicted: list[str]
    unseen: np.ndarray  # [tokens] bool: the word form never occurs in training
    lengths: list[int]  # tokens per sentence

    @classmethod
    def of(cls, sentences: Sequence[Sentence], predicted: Sequence[list[str]],
           train_words: set[str]) -> TagScores:
        for i, (sentence, tags) in enumerate(zip(sentences, predicted, strict=True)):
            if len(sentence) != len(tags):
                raise ValueError(f"sentence {i}: {len(sentence)} tokens but {len(tags)} tags")
        return cls(gold=[tag for sentence in sentences for _, tag in sentence],
                   predicted=[tag for tags in predicted for tag in tags],
                   unseen=np.array([word not in train_words
                                    for sentence in sentences for word, _ in sentence]),
                   lengths=[len(sentence) for sentence in sentences])

    def figures(self, prefix: str) -> dict[str, float]:
        """Percentages: accuracy, sentence accuracy, the share of unseen words (spellings
        never trained on) and, if there are any, the accuracy on them."""
        right = np.array(self.gold) == np.array(self.predicted)
        unseen = right[self.unseen]
        bounds = np.cumsum([0, *self.lengths])
        sentences = [right[a:b].all() for a, b in itertools.pairwise(bounds)]
        figures = {
            f"{prefix}_accuracy": round(100 * float(right.mean()), 2),
            f"{prefix}_sentence_accuracy": round(100 * float(np.mean(sentences)), 2),
            f"{prefix}_unseen_share": round(100 * float(self.unseen.mean()), 2),
        }
        if unseen.size:
            figures[f"{prefix}_unseen_accuracy"] = round(100 * float(unseen.mean()), 2)
        return figures

    def mapped(self, to: Callable[[str], str]) -> TagScores:
        """The same predictions judged in another tag set (e.g. fine -> universal)."""
        return TagScores([to(t) for t in self.gold], [to(t) for t in self.predicted],
                         self.unseen, self.lengths)

    def plot_confusion(self, path: Path, title: str, most: int = 24) -> None:
        """Rows: gold tag; columns: predicted; each row in % of the gold tag's tokens
        (the `most` most frequent gold tags; the rest are left out)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tags, counts = np.unique(self.gold, return_counts=True)
        shown = [str(t) for t in tags[np.argsort(-counts, kind="stable")][:most]]
        index = {tag: i for i, tag in enumerate(shown)}
        matrix = np.zeros((len(shown), len(shown)))
        for gold, predicted in zip(self.gold, self.predicted, strict=True):
            if gold in index and predicted in index:
                matrix[index[gold], index[predicted]] += 1
        rows = np.bincount([index[g] for g in self.gold if g in index], minlength=len(shown))
        percent = 100 * matrix / np.maximum(rows, 1)[:, None]
        size = 2 + 0.42 * len(shown)
        figure, axes = plt.subplots(figsize=(size + 1.5, size))
        image = axes.imshow(np.log10(1e-2 + percent), cmap="Blues")
        for i in range(len(shown)):
            for j in range(len(shown)):
                if percent[i, j] >= 0.05:
                    axes.text(j, i, f"{percent[i, j]:.1f}" if i != j else f"{percent[i, j]:.0f}",
                              ha="center", va="center", fontsize=6,
                              color="white" if percent[i, j] > 30 else "black")
        axes.set_xticks(range(len(shown)), shown, rotation=90)
        axes.set_yticks(range(len(shown)), shown)
        axes.set_xlabel("predicted tag")
        axes.set_ylabel("gold tag (row: % of its tokens)")
        axes.set_title(title)
        figure.colorbar(image, ax=axes, label="log10(% + 0.01)", shrink=0.7)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        plt.close(figure)
