"""The captioning task: Twitter emoji (or your captioned images) -> SentencePiece -> CNN +
recurrent decoder -> the `caption` export, evaluated with BLEU, exact match and word
accuracy on held-out images.

Subwords, not words: the held-out emoji's names hold words no training caption has
(a new flag's country, a new animal); a subword vocabulary can still spell them, and it
is the tokenizer translation already runs in the graph. The run directory keeps the
SentencePiece model, so that a resumed run keeps its vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import tensorflow as tf

from model.captioner import Captioner
from model.config import option
from model.contract import CAPTION, IMAGE_SIZE, IMAGES, MAX_LENGTH, Meta
from model.image_to_text import ImageToText, ImageToTextConfig
from model.losses import SmoothedCrossEntropy
from model.tokenizer import SubwordTokenizer
from training.caption_evaluation import caption_figures, plot_grid
from training.config import TrainingConfig
from training.corpora import (
    EMOJI_DATASOURCES,
    CaptionedImage,
    Splits,
    load_emoji,
    read_captions,
    split_fraction,
)
from training.driver import Prepared, TrainingTask
from training.evaluate import best_outputs, decoders
from training.pipeline import caption_batches
from training.subwords import load_or_train_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionConfig(TrainingConfig, ImageToTextConfig):
    """Image captioning on Twitter emoji (or your own captioned images)."""

    train_file: str = option("", "your own captions: a COCO-style captions JSON, or "
                                 "image_path<TAB>caption lines; empty = Twitter emoji")
    dev_file: str = option("", "your own dev captions (same formats); empty = 10%% of "
                               "--train-file's images (and 10%% for test)")
    image_dir: str = option("", "where relative image paths start; empty = each captions "
                                "file's directory")
    vocab_size: int = option(1000, "SentencePiece vocabulary of the captions")
    max_caption_tokens: int = option(24, "caption subwords kept (EOS included); also the "
                                         "exported default of max_length, minus one")
    augment: bool = option(True, "shift (up to 6 %%) and zoom (up to 10 %%) training "
                                 "images at random, on white; never flip them (names say "
                                 "left and right) or change their colours (names say "
                                 "colours and skin tones)")
    label_smoothing: float = option(0.1, "share of each target's probability spread over "
                                         "the vocabulary")
    eval_beam_width: int = option(4, "beam width of the final figures (greedy is measured "
                                     "too)")
    eval_length_penalty: float = option(0.6, "GNMT length penalty alpha of the final figures")
    eval_styles: str = option("", "also measure the test emoji as other styles draw them, "
                                  "comma-separated: apple, google, facebook (each fetched "
                                  "from npm once, 75-100 MB); empty = Twitter's only")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("dev_file", "image_dir"):
            if getattr(self, name) and not self.train_file:
                raise ValueError(f"--{name.replace('_', '-')} goes with --train-file (your "
                                 "own captions); without it the emoji are used")
        if self.eval_styles and self.train_file:
            raise ValueError("--eval-styles measures the emoji test split: it does not go "
                             "with --train-file")
        others = sorted(set(EMOJI_DATASOURCES) - {"twitter"})
        unknown = sorted(set(self.styles()) - set(others))
        if unknown:
            raise ValueError(f"--eval-styles: {', '.join(unknown)} is not another emoji "
                             f"style; choose among {', '.join(others)}")

    def styles(self) -> list[str]:
        """The other emoji styles whose drawings of the test emoji are measured."""
        return [style.strip() for style in self.eval_styles.split(",") if style.strip()]

    def default_name(self) -> str:
        return "caption-emoji" if not self.train_file else f"caption-{Path(self.train_file).stem}"


@dataclass
class CaptionData(Prepared):
    tokenizer: SubwordTokenizer
    train_images: int
    held_out: dict[str, list[CaptionedImage]]  # "dev", "test", "test_<style>"


def load_images(config: CaptionConfig) -> Splits[CaptionedImage]:
    if not config.train_file:
        return load_emoji()
    train_file = Path(config.train_file)
    image_dir = Path(config.image_dir) if config.image_dir else None
    images = read_captions(train_file, image_dir)
    if config.dev_file:
        return Splits(images, read_captions(Path(config.dev_file), image_dir), [])
    # By the path as the file gives it (relative to where images are): an image's
    # captions stay together, whatever the file's order or where the data lives.
    root = (image_dir or train_file.parent).resolve()
    by_name = {image.path.relative_to(root).as_posix() if image.path.is_relative_to(root)
               else str(image.path): image for image in images}
    split = split_fraction(list(by_name), seed=config.seed)
    return Splits(*([by_name[name] for name in part] for part in (split.train, split.dev,
                                                                  split.test)))


def augmentation(seed: int) -> keras.Sequential:
    """Random shifts and zooms of a batch of pixels [batch, size, size, 3], filling with
    white (the emoji's background)."""
    return keras.Sequential([
        keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", fill_value=1.0,
                                       seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="constant", fill_value=1.0, seed=seed + 1),
    ])


class CaptionTask(TrainingTask):
    name = CAPTION.task
    description = "image captioner: CNN encoder, recurrent decoder (default: Twitter emoji)"
    config = CaptionConfig
    # `quick` trains in minutes on 2 CPU cores for demos; `full` is the measured model of
    # the README. Both anneal along a cosine: the rate ends near 0 however short the run.
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(epochs=6, learning_rate=3e-3, cosine_decay=True, patience=0),
        "full": dict(epochs=80, learning_rate=2e-3, cosine_decay=True, patience=10,
                     eval_styles="apple,google,facebook"),
    }

    def prepare(self, config: CaptionConfig, run_dir: Path) -> CaptionData:
        splits = load_images(config)
        train = splits.train[:config.max_train_examples or None]
        held_out = {"dev": splits.dev[:config.max_eval_examples or None],
                    "test": splits.test[:config.max_eval_examples or None]}
        for style in config.styles():
            held_out[f"test_{style}"] = load_emoji(style=style).test[
                :config.max_eval_examples or None]
        log.info("training on %d images (%d captions); evaluating on %d dev and %d test "
                 "images", len(train), sum(len(i.captions) for i in train),
                 len(held_out["dev"]), len(held_out["test"]))
        tokenizer = load_or_train_tokenizer(run_dir, (c for i in train for c in i.captions),
                                            config.vocab_size)
        ids = tokenizer.tokenize(tf.constant([c for i in train for c in i.captions]))
        cut = int(tf.reduce_sum(tf.cast(ids.row_lengths() > config.max_caption_tokens,
                                        tf.int32)))
        if cut:
            log.warning("%d training captions have more than --max-caption-tokens %d "
                        "subwords (EOS included) and are cut: the model learns to stop "
                        "early; raise it", cut, config.max_caption_tokens)

        def files(images: list[CaptionedImage]) -> dict:
            return dict(paths=[str(image.path) for image in images],
                        captions=[image.captions for image in images])

        layout = dict(tokenizer=tokenizer, image_size=config.image_size,
                      batch_size=config.batch_size, max_caption_tokens=config.max_caption_tokens)
        return CaptionData(
            train=caption_batches(**files(train), shuffle_seed=config.seed,
                                  augment=augmentation(config.seed) if config.augment
                                  else None, **layout),
            dev=caption_batches(**files(held_out["dev"]), **layout),
            tokenizer=tokenizer, train_images=len(train), held_out=held_out)

    def build_model(self, config: CaptionConfig, data: CaptionData) -> keras.Model:
        return ImageToText.from_hyperparameters(data.tokenizer.vocab_size, config)

    def loss(self, config: CaptionConfig) -> keras.losses.Loss:
        return SmoothedCrossEntropy(config.label_smoothing)

    def export(self, config: CaptionConfig, model: keras.Model, data: CaptionData,
               path: Path) -> None:
        Captioner(model, data.tokenizer).save(path)

    def evaluate(self, config: CaptionConfig, path: Path,
                 data: CaptionData) -> dict[str, float]:
        """BLEU (all references), exact match and word accuracy per split (and per other
        emoji style), greedy and beam search, through the exported signature called as the
        server calls it; per kind of held-out image too (new emoji, new skin tones); the
        best and worst test captions as PNG grids in the run directory."""
        signature = tf.saved_model.load(str(path)).signatures[CAPTION.signature.name]
        figures: dict[str, float] = {}
        for decoder, width in decoders(config.eval_beam_width):
            options = dict(beam_width=width, num_hypotheses=1,
                           length_penalty=config.eval_length_penalty,
                           max_length=config.max_caption_tokens - 1)
            for split, images in data.held_out.items():
                if not images:
                    continue
                hypotheses = best_outputs(signature, CAPTION.signature, IMAGES.name,
                                          [image.path.read_bytes() for image in images],
                                          options, f"{split} {decoder}")
                for key, value in caption_figures(images, hypotheses).items():
                    figures[f"{split}_{key}_{decoder}"] = value
                if split.startswith("test") and width > 1:
                    plot_grid(Path(config.run_dir) / config.name / f"caption-grid-{split}.png",
                              images, hypotheses, f"{config.name}: {split} images, {decoder}")
                if decoder == "greedy" and split == "dev":
                    for image, hypothesis in list(zip(images, hypotheses, strict=True))[:3]:
                        log.info("dev sample: %s -> %s (references: %s)", image.path.name,
                                 hypothesis, " | ".join(image.captions))
            log.info("%s: %s", decoder,
                     {k: v for k, v in figures.items() if k.endswith(decoder)})
        return figures

    def metadata(self, config: CaptionConfig, data: CaptionData) -> dict[str, Any]:
        return {
            Meta.SIGNATURE: CAPTION.signature.name,
            Meta.LABELS: {"corpus": Path(config.train_file).name if config.train_file
                          else "twitter-emoji"},
            MAX_LENGTH.name: config.max_caption_tokens - 1,
            IMAGE_SIZE: config.image_size,
            "vocab_size": data.tokenizer.vocab_size,
            "train_images": data.train_images,
            "eval": {"beam_width": config.eval_beam_width,
                     "length_penalty": config.eval_length_penalty},
        }


TASK = CaptionTask()
