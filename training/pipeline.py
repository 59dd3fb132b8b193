"""tf.data pipelines: in-graph tokenisation, length bucketing, teacher forcing, images
decoded as the export decodes them, and character streams in chunks for truncated
backpropagation through time.

Every pipeline says how many batches make one pass over its data, and the driver gives
Keras `steps_per_epoch` and `validation_steps`. Training pipelines repeat forever, so
Keras keeps one iterator for the whole run; evaluation pipelines, which Keras makes a
new iterator for at every evaluation, have no background prefetch. Given datasets of
unknown size, Keras made and dropped iterators at every epoch boundary, and dropping one
whose prefetch thread was busy stalled the main thread for 3 to 40 s (seen with a
stack-dumping watchdog, in `EpochIterator.reset`): the "silent pauses" between epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model.images import decode_image
from model.tokenizer import BOS_ID, UNK_ID, SubwordTokenizer
from training.corpora.cache import CorpusError

# Batches are drawn from buckets of similar length, so padding stays small.
BUCKET_BOUNDARIES = [8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128]


@dataclass(frozen=True)
class Batches:
    """A pipeline of (inputs, targets) batches and the number of batches in one pass
    over its examples (an epoch; 0 for no examples)."""

    dataset: tf.data.Dataset
    steps: int


def translation_batches(pairs: list[tuple[str, str]], tokenizer: SubwordTokenizer,
                        batch_size: int, max_source_tokens: int, max_target_tokens: int,
                        shuffle_seed: int | None = None) -> Batches:
    """Sentence pairs -> ((source, target_in), target_out) batches.

    source [batch, src_time] and target_out [batch, tgt_time] end with EOS;
    target_in is target_out shifted right behind BOS (teacher forcing); 0 pads.
    With a `shuffle_seed` (training) the order is reshuffled every epoch and the
    pipeline repeats forever, prefetching; without (evaluation) it is one plain pass.
    `tokenizer` is anything with a `tokenize(texts, max_tokens)` to ragged ids, as
    `SubwordTokenizer`.
    """
    if not pairs:
        return Batches(tf.data.Dataset.range(0), 0)
    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    ds = tf.data.Dataset.from_tensor_slices((sources, targets)).batch(1024)

    def tokenize(source, target):  # ragged batches -> padded rows + their lengths
        s = tokenizer.tokenize(source, max_source_tokens)
        t = tokenizer.tokenize(target, max_target_tokens)
        return s.to_tensor(), s.row_lengths(), t.to_tensor(), t.row_lengths()

    ds = ds.map(tokenize).unbatch()
    ds = ds.map(lambda s, s_len, t, t_len: (s[:s_len], t[:t_len])).cache()

    def teacher_forcing(source, target):
        return (source, shifted_right(target)), target

    return _bucketed(ds, len(pairs), lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
                     batch_size, shuffle_seed, teacher_forcing)


def shifted_right(target: tf.Tensor) -> tf.Tensor:
    """Teacher forcing's decoder input: target [batch, time] (0-padded) shifted right
    behind BOS; padding stays padding."""
    shifted = tf.concat([tf.fill([tf.shape(target)[0], 1], BOS_ID), target[:, :-1]], 1)
    return tf.where(target == 0, 0, shifted)


def caption_batches(paths: list[str], captions: list[tuple[str, ...]],
                    tokenizer: SubwordTokenizer, image_size: int, batch_size: int,
                    max_caption_tokens: int, shuffle_seed: int | None = None,
                    augment: Callable[[tf.Tensor], tf.Tensor] | None = None) -> Batches:
    """Image files and their references -> ((pixels, target_in), target_out) batches,
    one example per (image, reference) pair.

    pixels [batch, size, size, 3] as the export decodes them (`model.images`); target_out
    [batch, time] ends with EOS, target_in is it shifted right behind BOS, 0 pads. Each
    image is read and decoded once and kept in memory (float32: 48 KB an image at 64
    pixels) with its references. Training (with `shuffle_seed`) shuffles the images
    every epoch (in a buffer of 4,096) and their pairs (in one of 256), applies `augment`
    to each batch of pixels, and repeats forever.
    """
    count = sum(len(references) for references in captions)
    if not count:
        return Batches(tf.data.Dataset.range(0), 0)
    ids = tokenizer.tokenize(tf.constant([c for references in captions for c in references]),
                             max_caption_tokens)
    ids = tf.RaggedTensor.from_row_lengths(ids, [len(r) for r in captions])  # [image, ref, time]
    ds = tf.data.Dataset.from_tensor_slices((paths, ids))
    ds = ds.map(lambda path, references: (decode_image(tf.io.read_file(path), image_size),
                                          references),
                num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(min(len(paths), 4096), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.flat_map(lambda pixels, references: tf.data.Dataset.from_tensor_slices(
        references).map(lambda reference: (pixels, reference)))
    if shuffle_seed is not None:
        ds = ds.shuffle(256, seed=shuffle_seed + 1, reshuffle_each_iteration=True)

    def teacher_forcing(pixels, target):
        if augment is not None:
            pixels = augment(pixels)
        return (pixels, shifted_right(target)), target

    ds = ds.padded_batch(batch_size).map(teacher_forcing)
    steps = -(-count // batch_size)
    if shuffle_seed is None:
        return Batches(ds, steps)
    return Batches(ds.repeat().prefetch(tf.data.AUTOTUNE), steps)


def tagging_batches(tokens: tf.RaggedTensor, tags: tf.RaggedTensor, features,
                    batch_size: int, shuffle_seed: int | None = None) -> Batches:
    """Tagged sentences -> (inputs, tags, weights) batches of similar length.

    tokens [sentences, (time)] string and tags [sentences, (time)] int32; `features`
    (a `model.tagger.TaggerFeatures`) turns tokens into the model's inputs (a dict of
    [batch, time, ...] tensors); weights [batch, time] are 1 on real tokens, 0 on
    padding. Training (with `shuffle_seed`) and evaluation pipelines as in
    `translation_batches`.
    """
    count = int(tokens.nrows())
    if not count:
        return Batches(tf.data.Dataset.range(0), 0)

    def featurize(tokens, tags):  # ragged chunks -> padded rows + their lengths
        return features(tokens), tags.to_tensor(), tokens.row_lengths()

    ds = tf.data.Dataset.from_tensor_slices((tokens, tags)).ragged_batch(1024)
    ds = ds.map(featurize).unbatch()
    ds = ds.map(lambda x, t, n: ({k: v[:n] for k, v in x.items()}, t[:n])).cache()

    def weigh(inputs, tags):
        return inputs, tags, tf.cast(inputs["words"] != 0, tf.float32)

    return _bucketed(ds, count, lambda x, t: tf.shape(x["words"])[0], batch_size,
                     shuffle_seed, weigh)


def _bucketed(ds: tf.data.Dataset, count: int, length, batch_size: int,
              shuffle_seed: int | None, finish) -> Batches:
    """Cached examples -> `finish`ed batches drawn from buckets of similar `length`.

    One pass counts the batches (it also fills the cache the epochs read from).
    """
    lengths = np.fromiter(ds.map(length).as_numpy_iterator(), np.int64, count)
    per_bucket = np.bincount(np.searchsorted(BUCKET_BOUNDARIES, lengths, side="right"))
    steps = int(np.ceil(per_bucket / batch_size).sum())
    if shuffle_seed is not None:
        ds = ds.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.bucket_by_sequence_length(
        element_length_func=length,
        bucket_boundaries=BUCKET_BOUNDARIES,
        bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1),
    ).map(finish)
    if shuffle_seed is None:
        return Batches(ds, steps)
    return Batches(ds.repeat().prefetch(tf.data.AUTOTUNE), steps)


def line_starts(ids: np.ndarray, newline_id: int | None) -> np.ndarray:
    """Positions of `ids` where a line begins (0, and after each newline)."""
    if newline_id is None:
        return np.zeros(1, np.int64)
    return np.concatenate([[0], np.flatnonzero(ids[:-1] == newline_id) + 1])


def stream_batches(ids: np.ndarray, starts: np.ndarray, batch_size: int, chunk_length: int,
                   chunks: int, seed: int | None = None, unk_rate: float = 0.0
                   ) -> Batches:
    """A character stream -> ({"chars", "reset"}, targets) batches for truncated
    backpropagation through time: chars and targets [batch, chunk_length] int32 (targets
    are chars shifted by one), reset [batch] bool.

    The stream is cut into segments of `chunks` x `chunk_length` characters, each starting
    at a line start (`starts`, when one is near) and read as BOS followed by its
    characters. Row i of `chunks` consecutive batches holds one segment's consecutive
    chunks: the model carries its state from one batch to the next in each row, and
    starts again from its initial state where `reset` (a segment's first chunk). Training
    (with `seed`) cuts the stream afresh every epoch from a random shift, shuffles the
    segments, replaces `unk_rate` of the input characters with UNK, and repeats forever;
    evaluation lays the stream in `batch_size` contiguous lanes, one segment each, in one
    pass.
    """
    length = len(ids)
    if seed is None:
        chunks = (length - 1) // batch_size // chunk_length
    segment = chunks * chunk_length
    count = (length - 1) // segment // batch_size * batch_size if seed is not None else (
        batch_size if chunks else 0)
    if not count:
        raise CorpusError(
            f"{length:,} characters make no batch of {batch_size} rows of {chunk_length} "
            "characters (x --chunks in training): use a longer text, or lower --batch-size, "
            "--chunk-length or --chunks")

    def segment_starts(rng: np.random.Generator | None) -> np.ndarray:
        shift = rng.integers(0, length - count * segment + 1) if rng else 0
        wanted = shift + segment * np.arange(count)
        # The next line start, if it is within a quarter segment (lines may be long).
        after = starts[np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)]
        snapped = np.where((after >= wanted) & (after - wanted < segment // 4), after, wanted)
        return np.minimum(snapped, length - segment)

    def batches():
        rng = None if seed is None else np.random.default_rng(seed)
        while True:
            begins = segment_starts(rng)
            if rng is not None:
                rng.shuffle(begins)
            for group in begins.reshape(-1, batch_size):
                rows = group[:, None] + np.arange(segment)[None, :]  # [batch, segment]
                targets = ids[rows]
                inputs = np.concatenate([np.full((batch_size, 1), BOS_ID, np.int32),
                                         targets[:, :-1]], axis=1)
                if unk_rate and rng is not None:
                    inputs = np.where(rng.random(inputs.shape) < unk_rate, UNK_ID, inputs)
                for k in range(chunks):
                    span = slice(k * chunk_length, (k + 1) * chunk_length)
                    yield ({"chars": inputs[:, span], "reset": np.full(batch_size, k == 0)},
                           targets[:, span])
            if rng is None:
                return

    chars = tf.TensorSpec([batch_size, chunk_length], tf.int32)
    ds = tf.data.Dataset.from_generator(batches, output_signature=(
        {"chars": chars, "reset": tf.TensorSpec([batch_size], tf.bool)}, chars))
    steps = count // batch_size * chunks
    if seed is None:
        return Batches(ds, steps)
    return Batches(ds.prefetch(tf.data.AUTOTUNE), steps)
