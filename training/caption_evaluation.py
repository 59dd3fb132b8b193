"""Caption figures against several references per image: corpus BLEU (sacrebleu), exact
match, and word accuracy, overall and per kind of held-out image; a PNG grid of the best
and worst captioned images."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import sacrebleu

from training.corpora import CaptionedImage


def word_errors(hypothesis: str, reference: str) -> int:
    """Word-level Levenshtein distance: substitutions, insertions and deletions."""
    hyp, ref = hypothesis.split(), reference.split()
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, guess in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (word != guess)))
        previous = current
    return previous[-1]


def closest(hypothesis: str, references: Sequence[str]) -> tuple[int, int]:
    """(word errors, reference words) against the reference it is closest to, by error
    rate."""
    return min(((word_errors(hypothesis, r), len(r.split())) for r in references),
               key=lambda pair: pair[0] / max(1, pair[1]))


def caption_figures(images: Sequence[CaptionedImage], hypotheses: Sequence[str]
                    ) -> dict[str, float]:
    """`bleu` (corpus BLEU, every reference), `exact` (share of captions equal to one of
    their references), `word_accuracy` (1 - word error rate against each image's closest
    reference, at least 0), in percent; the same prefixed by each held-out kind
    (`emoji_bleu`, `skin_tone_exact`, ...) when the images have kinds."""
    figures = _figures(images, hypotheses)
    kinds = sorted({image.held_out for image in images} - {""})
    for kind in kinds:
        chosen = [i for i, image in enumerate(images) if image.held_out == kind]
        part = _figures([images[i] for i in chosen], [hypotheses[i] for i in chosen])
        figures |= {f"{kind.replace(' ', '_')}_{key}": value for key, value in part.items()}
    return figures


def _figures(images: Sequence[CaptionedImage], hypotheses: Sequence[str]) -> dict[str, float]:
    most = max(len(image.captions) for image in images)
    streams = [[image.captions[k] if k < len(image.captions) else None for image in images]
               for k in range(most)]  # sacrebleu skips the None of images with fewer
    exact = sum(h in image.captions for image, h in zip(images, hypotheses, strict=True))
    errors = [closest(h, image.captions) for image, h in zip(images, hypotheses, strict=True)]
    wrong, words = sum(e for e, _ in errors), sum(n for _, n in errors)
    return {
        "bleu": round(sacrebleu.corpus_bleu(list(hypotheses), streams).score, 2),
        "exact": round(100 * exact / len(images), 2),
        "word_accuracy": round(100 * max(0.0, 1 - wrong / max(1, words)), 2),
    }


def plot_grid(path: Path, images: Sequence[CaptionedImage], hypotheses: Sequence[str],
              title: str, count: int = 8) -> None:
    """A PNG of the `count` best and `count` worst captioned images (by word error rate
    against the closest reference), each with its caption and, if wrong, its first
    reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [errors / max(1, words) for errors, words in
             (closest(h, image.captions) for image, h in zip(images, hypotheses, strict=True))]
    order = sorted(range(len(images)), key=lambda i: (rates[i], str(images[i].path)))
    best = order[:count]
    rows = [("best", best), ("worst", [i for i in reversed(order) if i not in best][:count])]
    # Captions go under their image, in a band as tall as the longest caption needs.
    figure, axes = plt.subplots(2, count, figsize=(2.1 * count, 7.4), squeeze=False,
                                gridspec_kw=dict(hspace=0.9, wspace=0.15))
    for row, (label, chosen) in enumerate(rows):
        for column in range(count):
            ax = axes[row][column]
            ax.axis("off")
            if column >= len(chosen):
                continue
            i = chosen[column]
            ax.imshow(plt.imread(images[i].path))
            text = textwrap.fill(hypotheses[i], 22)
            if hypotheses[i] not in images[i].captions:
                text += "\n(" + textwrap.fill(images[i].captions[0], 22) + ")"
            ax.text(0.5, -0.04, text, transform=ax.transAxes, ha="center", va="top",
                    fontsize=7, color="black" if rates[i] == 0 else "firebrick")
        axes[row][0].text(-0.15, 0.5, label, transform=axes[row][0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=11)
    figure.suptitle(title + "  (red: wrong; the first reference in brackets)", fontsize=10)
    figure.subplots_adjust(left=0.03, right=0.99, top=0.93, bottom=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
