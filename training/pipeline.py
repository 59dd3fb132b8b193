"""tf.data pipelines: in-graph tokenisation, length bucketing, teacher forcing."""

from __future__ import annotations

import tensorflow as tf

from model.tokenizer import BOS_ID, SubwordTokenizer

# Batches are drawn from buckets of similar length, so padding stays small.
BUCKET_BOUNDARIES = [8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128]


def translation_batches(pairs: list[tuple[str, str]], tokenizer: SubwordTokenizer,
                        batch_size: int, max_source_tokens: int, max_target_tokens: int,
                        shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Sentence pairs -> ((source, target_in), target_out) batches.

    source [batch, src_time] and target_out [batch, tgt_time] end with EOS;
    target_in is target_out shifted right behind BOS (teacher forcing); 0 pads.
    With a `shuffle_seed` the order is reshuffled every epoch.
    """
    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    ds = tf.data.Dataset.from_tensor_slices((sources, targets)).batch(1024)

    def tokenize(source, target):  # ragged batches -> padded rows + their lengths
        s = tokenizer.tokenize(source, max_source_tokens)
        t = tokenizer.tokenize(target, max_target_tokens)
        return s.to_tensor(), s.row_lengths(), t.to_tensor(), t.row_lengths()

    ds = ds.map(tokenize).unbatch()
    ds = ds.map(lambda s, s_len, t, t_len: (s[:s_len], t[:t_len])).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(pairs), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
        bucket_boundaries=BUCKET_BOUNDARIES,
        bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1),
    )
    bos = tf.constant([BOS_ID], tf.int32)

    def teacher_forcing(source, target):
        shifted = tf.concat([tf.fill([tf.shape(target)[0], 1], bos[0]), target[:, :-1]], 1)
        shifted = tf.where(target == 0, 0, shifted)  # padding stays padding
        return (source, shifted), target

    return ds.map(teacher_forcing).prefetch(tf.data.AUTOTUNE)
