"""Recurrent inference over ragged batches: the Keras layers' numbers, in less time."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.cells import recurrent_layer
from model.recurrent_inference import RecurrentInference, packing


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_same_outputs_as_the_keras_layers_at_every_real_position(cell, bidirectional):
    """Two stacked layers over sequences of lengths 5, 1, 0 and 3 (so the batch's rows
    finish at different steps, one has none): the outputs of the Keras layers run on
    the padded batch with its mask, at every real position."""
    rng = np.random.default_rng(3)
    layers = []
    for i in range(2):
        layer = recurrent_layer(cell, 6, return_sequences=True, name=f"{cell}{i}")
        layers.append(keras.layers.Bidirectional(layer) if bidirectional else layer)
    lengths = [5, 1, 0, 3]
    inputs = tf.RaggedTensor.from_row_lengths(
        rng.normal(size=(sum(lengths), 4)).astype(np.float32), lengths)
    padded, mask = inputs.to_tensor(), tf.sequence_mask(lengths, max(lengths))

    def keras_outputs() -> tf.Tensor:
        outputs = padded
        for layer in layers:
            outputs = layer(outputs, mask=mask)
        return outputs

    keras_outputs()  # makes the weights; then trained-looking ones, not Keras' small ones
    for layer in layers:
        for weight in layer.weights:
            weight.assign(rng.normal(scale=0.5, size=weight.shape))
    expected = keras_outputs()
    got = tf.function(RecurrentInference(layers))(inputs)
    assert got.row_lengths().numpy().tolist() == lengths
    np.testing.assert_allclose(got.flat_values.numpy(), tf.ragged.boolean_mask(
        expected, mask).flat_values.numpy(), rtol=1e-5, atol=1e-6)


def test_packing_puts_each_step_of_the_running_sequences_together():
    """Lengths 2, 3, 1: ranked 3, 2, 1 by length; step 0 holds all three, step 1 the two
    longer, step 2 the longest alone, each step's rows longest first."""
    slots = packing(tf.constant([0, 2, 5, 6], tf.int64))
    forward, order, starts = (t.numpy().tolist() for t in slots[False])
    assert starts == [0, 3, 5, 6, 6]
    # tokens: row 0 (a0 a1), row 1 (b0 b1 b2), row 2 (c0); rank: row 1, row 0, row 2
    assert forward == [1, 4, 0, 3, 5, 2]  # a0 a1 b0 b1 b2 c0
    assert order == [2, 0, 5, 3, 1, 4]  # slot 0 holds token 2 (b0), ...
    backward, _, _ = (t.numpy().tolist() for t in slots[True])
    assert backward == [4, 1, 5, 3, 0, 2]  # step 0: each one's last token, b2 a1 c0


def test_settings_the_loops_do_not_run_are_refused():
    layer = keras.layers.LSTM(4, activation="relu", return_sequences=True)
    with pytest.raises(ValueError, match="default activations"):
        RecurrentInference([layer])


def test_a_model_trained_with_mixed_precision_runs_in_its_weights_float32():
    """Under mixed_float16 the Keras layers compute in float16 and their inputs are
    float16: inference takes them and answers the float32 outputs of the same weights."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = keras.layers.Bidirectional(recurrent_layer("lstm", 5, return_sequences=True))
        padded = tf.random.stateless_normal([2, 3, 4], seed=(1, 2))
        expected = layer(padded)  # float16
        inputs = tf.RaggedTensor.from_tensor(tf.cast(padded, tf.float16), lengths=[3, 3])
        got = RecurrentInference([layer])(inputs)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert expected.dtype == tf.float16 and got.flat_values.dtype == tf.float32
    np.testing.assert_allclose(got.flat_values.numpy(),
                               tf.reshape(expected, [6, 10]).numpy(), atol=1e-2)
