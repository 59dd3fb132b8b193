"""The k largest entries of each row, as `tf.math.top_k` gives them, in less time.

The beam search takes a few best of each hypothesis' whole-vocabulary scores every
step. TensorFlow's CPU kernel reads each row element by element: over 256 rows of
8,000 (batch 64, beam 4) it took 2.5 ms here, a fifth of the decode step. Split into
blocks of 64 entries, a row's k largest lie in its k blocks with the largest maxima,
and a maximum per block is one vectorised reduction: the same choice took 0.6 ms.
"""

from __future__ import annotations

import tensorflow as tf

BLOCK = 64  # entries per block: the fastest of 32..256 at 8,000 entries a row here


def blocked_top_k(values: tf.Tensor, k: tf.Tensor | int) -> tuple[tf.Tensor, tf.Tensor]:
    """values [..., n] float, k <= n -> (values, indices) [..., k], exactly
    `tf.math.top_k(values, k)`: largest first, equal values in index order.

    Exact because an entry in a row's top k lies in a block whose maximum is among the
    k largest block maxima (ties by block index): each block ranked before it holds an
    entry ranked before the entry itself, and fewer than k are. The chosen blocks are
    read in index order, so equal values keep the order of the whole row.
    """
    shape = tf.shape(values)
    n = values.shape[-1] or shape[-1]  # static where known: the reshapes are faster
    rows = tf.reshape(values, [-1, n])
    blocks = -(-n // BLOCK)
    # The last block is filled with -inf, which ranks after any entry of the row
    # (an entry of -inf too, since the fill comes later in index order).
    if values.shape[-1] is None or values.shape[-1] % BLOCK:
        rows = tf.pad(rows, [[0, 0], [0, blocks * BLOCK - n]], constant_values=float("-inf"))
    grid = tf.reshape(rows, [tf.shape(rows)[0], blocks, BLOCK])  # [rows, blocks, BLOCK]
    _, chosen = tf.math.top_k(tf.reduce_max(grid, axis=-1), k=tf.minimum(k, blocks))
    chosen = tf.sort(chosen, axis=-1)  # [rows, k'] block indices, ascending
    candidates = tf.reshape(tf.gather(grid, chosen, batch_dims=1), [tf.shape(rows)[0], -1])
    best, position = tf.math.top_k(candidates, k=k)  # [rows, k]
    indices = tf.gather(chosen, position // BLOCK, batch_dims=1) * BLOCK + position % BLOCK
    out_shape = tf.concat([shape[:-1], [tf.shape(best)[-1]]], axis=0)
    return tf.reshape(best, out_shape), tf.reshape(indices, out_shape)
