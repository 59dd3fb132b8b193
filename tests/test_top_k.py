"""The blocked top-k chooses exactly what `tf.math.top_k` chooses, ties and all."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model.top_k import BLOCK, top_k


@pytest.mark.parametrize("width", [1, 6, BLOCK - 1, BLOCK, 3 * BLOCK + 5, 4000, 8000])
@pytest.mark.parametrize("k", [1, 4, 16])
def test_equals_tensorflows_top_k_with_many_ties(width, k):
    k = min(k, width)
    rng = np.random.default_rng(width * 31 + k)
    # Rounded: few distinct values, so rows hold ties within and across blocks and at
    # the k-th place, and blocks differ in their maxima; -inf and the search's large
    # negative filler among them.
    values = np.round(rng.normal(0, 2, size=(5, 3, width))).astype(np.float32)
    values[values == -4] = -np.inf
    values[values <= -5] = -1e9
    expected_values, expected_ids = tf.math.top_k(values, k=k)
    got_values, got_ids = top_k(tf.constant(values), tf.constant(k))
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_array_equal(got_values, expected_values)


def test_equals_tensorflows_top_k_on_scores_traced_without_static_width():
    """As the beam search calls it inside a function traced for any vocabulary size."""
    values = tf.random.stateless_normal([8, 4, 8000], seed=[1, 2])
    traced = tf.function(top_k, input_signature=[tf.TensorSpec([None, None, None]),
                                                  tf.TensorSpec([], tf.int32)])
    got_values, got_ids = traced(values, tf.constant(4))
    expected_values, expected_ids = tf.math.top_k(values, k=4)
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_array_equal(got_values, expected_values)
