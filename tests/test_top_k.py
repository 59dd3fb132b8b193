"""The blocked top-k chooses exactly what `tf.math.top_k` chooses, ties and all."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model.top_k import BLOCK, blocked_top_k

WIDTHS_AND_KS = [(1, 1), (6, 1), (6, 4), (6, 6), (BLOCK - 1, 4), (BLOCK, 16),
                 (3 * BLOCK + 5, 1), (3 * BLOCK + 5, 4), (3 * BLOCK + 5, 16), (4000, 4),
                 (8000, 1), (8000, 4), (8000, 16)]


def tied_rows(width: int, k: int) -> np.ndarray:
    """[5, 3, width] rounded scores: few distinct values, so rows hold ties within and
    across blocks and at the k-th place, and blocks differ in their maxima; -inf and the
    search's large negative filler among them."""
    rng = np.random.default_rng(width * 31 + k)
    values = np.round(rng.normal(0, 2, size=(5, 3, width))).astype(np.float32)
    values[values == -4] = -np.inf
    values[values <= -5] = -1e9
    return values


def assert_chooses_as_tensorflow(blocked, values, k: int) -> None:
    """`blocked(values, k)` gives `tf.math.top_k`'s values and indices exactly."""
    got_values, got_ids = blocked(tf.constant(values), tf.constant(k))
    expected_values, expected_ids = tf.math.top_k(values, k=k)
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_array_equal(got_values, expected_values)


@pytest.mark.parametrize(("width", "k"), WIDTHS_AND_KS)
def test_equals_tensorflows_top_k_with_many_ties(width, k):
    assert_chooses_as_tensorflow(blocked_top_k, tied_rows(width, k), k)


@pytest.mark.parametrize(("width", "k"), [(3 * BLOCK + 5, 4), (8000, 4), (8000, 16)])
def test_compiled_by_xla_it_still_equals_tensorflows_top_k(width, k):
    """As an `--xla-decode` export runs it: XLA's own reductions and top-k, many blocks."""
    compiled = tf.function(blocked_top_k, jit_compile=True)
    assert_chooses_as_tensorflow(compiled, tied_rows(width, k), k)


def test_equals_tensorflows_top_k_on_scores_traced_without_static_width():
    """As the beam search calls it inside a function traced for any vocabulary size."""
    traced = tf.function(blocked_top_k, input_signature=[tf.TensorSpec([None, None, None]),
                                                         tf.TensorSpec([], tf.int32)])
    assert_chooses_as_tensorflow(traced, tf.random.stateless_normal([8, 4, 8000], seed=[1, 2]), 4)
