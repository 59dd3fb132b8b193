"""tf.data pipelines: in-graph tokenisation, length bucketing, teacher forcing.

Every pipeline says how many batches make one pass over its data, and the driver gives
Keras `steps_per_epoch` and `validation_steps`. Training pipelines repeat forever, so
Keras keeps one iterator for the whole run; evaluation pipelines, which Keras makes a
new iterator for at every evaluation, have no background prefetch. Given datasets of
unknown size, Keras made and dropped iterators at every epoch boundary, and dropping one
whose prefetch thread was busy stalled the main thread for 3 to 40 s (seen with a
stack-dumping watchdog, in `EpochIterator.reset`): the "silent pauses" between epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model.tokenizer import BOS_ID, SubwordTokenizer

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
    bos = tf.constant([BOS_ID], tf.int32)

    def teacher_forcing(source, target):
        shifted = tf.concat([tf.fill([tf.shape(target)[0], 1], bos[0]), target[:, :-1]], 1)
        shifted = tf.where(target == 0, 0, shifted)  # padding stays padding
        return (source, shifted), target

    return _bucketed(ds, len(pairs), lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
                     batch_size, shuffle_seed, teacher_forcing)


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
