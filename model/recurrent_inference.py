"""Trained Keras recurrent layers run over ragged sequences for inference, in less time.

Keras runs a recurrent layer over the padded batch and multiplies each step's inputs by
the input kernel inside its loop. In a serving batch of 64 Brown sentences 60 % of the
padded positions are padding, and the loop's many small products use the CPU far below
its peak. Here, as cuDNN does, the input products of the real tokens are one matrix
product per direction before its loop; the batch is packed step by step, longest
sequences first, as PyTorch's PackedSequence is, so that each step's recurrent product
and gates run on the sequences still running and nothing else, and no mask is needed.
The directions are independent loops, which TensorFlow runs side by side.

At batch 64 of Brown test sentences this tags 1.9 times as many tokens per second as
the Keras layers did in the full-profile tagger's export (README, the tagger's "Throughput").
Same numbers as the Keras layers, tested to float32 round-off, for the three cells of
`model/cells.py` with the settings `recurrent_layer` builds them with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

State = tuple[tf.Tensor, ...]


def _lstm(inputs: tf.Tensor, state: State, recurrent: tf.Tensor, bias: tf.Tensor | None
          ) -> State:
    """inputs [batch, 4 x units] (gates i, f, c, o as Keras orders them) -> (h, c)."""
    h, c = state
    i, f, g, o = tf.split(inputs + tf.matmul(h, recurrent), 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _gru(inputs: tf.Tensor, state: State, recurrent: tf.Tensor, bias: tf.Tensor | None
         ) -> State:
    """inputs [batch, 3 x units] (gates z, r, h) -> (h,), Keras' reset_after form: the
    reset gate scales the recurrent product, recurrent bias included."""
    (h,) = state
    x_z, x_r, x_h = tf.split(inputs, 3, axis=-1)
    inner = tf.matmul(h, recurrent)
    if bias is not None:
        inner += bias
    h_z, h_r, h_h = tf.split(inner, 3, axis=-1)
    z = tf.sigmoid(x_z + h_z)
    candidate = tf.tanh(x_h + tf.sigmoid(x_r + h_r) * h_h)
    return (z * h + (1 - z) * candidate,)


def _rnn(inputs: tf.Tensor, state: State, recurrent: tf.Tensor, bias: tf.Tensor | None
         ) -> State:
    """inputs [batch, units] -> (h,)."""
    return (tf.tanh(inputs + tf.matmul(state[0], recurrent)),)


Step = Callable[[tf.Tensor, State, tf.Tensor, "tf.Tensor | None"], State]
_CELLS: dict[type, tuple[Step, int, int]] = {  # cell -> its step, gates, state tensors
    keras.layers.LSTMCell: (_lstm, 4, 2),
    keras.layers.GRUCell: (_gru, 3, 1),
    keras.layers.SimpleRNNCell: (_rnn, 1, 1),
}


class _Direction:
    """One Keras recurrent layer (a direction of a Bidirectional one): its weights and
    how to step it."""

    def __init__(self, layer: keras.layers.RNN):
        cell = layer.cell
        if type(cell) not in _CELLS:
            raise ValueError(f"no inference for {type(cell).__name__}: cells are "
                             f"{[c.__name__ for c in _CELLS]}")
        if (cell.activation is not keras.activations.tanh
                or getattr(cell, "recurrent_activation", keras.activations.sigmoid)
                is not keras.activations.sigmoid
                or not getattr(cell, "reset_after", True)):
            raise ValueError(f"{layer.name}: inference runs the default activations "
                             "(tanh, sigmoid) and GRU's reset_after form only")
        self.step, gates, self.states = _CELLS[type(cell)]
        self.units, self.width = cell.units, gates * cell.units
        self.backward = layer.go_backwards
        self.cell = cell  # its weights are read when traced: the layer may be unbuilt yet

    @property
    def kernel(self) -> tf.Tensor:
        return self.cell.kernel

    @property
    def input_bias(self) -> tf.Tensor | None:
        """GRU's bias is [input bias, recurrent bias]; the others' the input one only."""
        if not self.cell.use_bias:
            return None
        return self.cell.bias[0] if len(self.cell.bias.shape) == 2 else self.cell.bias

    @property
    def recurrent_bias(self) -> tf.Tensor | None:
        bias = self.cell.bias if self.cell.use_bias else None
        return bias[1] if bias is not None and len(bias.shape) == 2 else None

    def run(self, packed: tf.Tensor, starts: tf.Tensor) -> tf.Tensor:
        """packed [tokens, width]: the input products, step by step, each step's rows
        those of the sequences still running, longest first (`packing`); starts [steps
        + 2]: where each step's rows start -> outputs [tokens, units], packed alike."""
        recurrent = tf.convert_to_tensor(self.cell.recurrent_kernel)
        bias = self.recurrent_bias
        zeros = tf.zeros([starts[1] - starts[0], self.units], packed.dtype)

        def body(t, state, outputs):
            state = self.step(packed[starts[t]:starts[t + 1]], state, recurrent, bias)
            running = starts[t + 2] - starts[t + 1]  # the sequences that go on
            return (t + 1, tuple(s[:running] for s in state),
                    outputs.write(t, state[0]))

        steps = tf.size(starts) - 2  # the last start repeats: no step has a zero row
        _, _, outputs = tf.while_loop(
            lambda t, *_: t < steps, body,
            (tf.constant(0), (zeros,) * self.states,
             tf.TensorArray(packed.dtype, size=steps, infer_shape=False,
                            element_shape=[None, self.units])),
            shape_invariants=(tf.TensorShape([]),
                              (tf.TensorShape([None, self.units]),) * self.states,
                              tf.TensorShape(None)))
        return outputs.concat()


class RecurrentInference(tf.Module):
    """Stacked Keras recurrent layers (each an RNN or a Bidirectional RNN with
    merge_mode concat, return_sequences) over ragged inputs, for inference.

    Holds the layers' own variables: nothing is copied, so it always runs the weights
    the layers have.
    """

    def __init__(self, layers: Sequence[keras.layers.Layer]):
        super().__init__(name="recurrent_inference")
        self.stack = []
        for layer in layers:
            if isinstance(layer, keras.layers.Bidirectional):
                if layer.merge_mode != "concat":
                    raise ValueError(f"{layer.name}: merge_mode must be concat")
                self.stack.append([_Direction(layer.forward_layer),
                                   _Direction(layer.backward_layer)])
            else:
                self.stack.append([_Direction(layer)])

    def __call__(self, inputs: tf.RaggedTensor) -> tf.RaggedTensor:
        """inputs [batch, (time), features] -> outputs [batch, (time), units of every
        direction], what the layers give at each real position."""
        slots = packing(inputs.row_splits)
        # In the weights' dtype: float32 also for a model trained with mixed precision,
        # whose layers compute in float16 (this runs as the export's CPU default would).
        flat = tf.cast(inputs.flat_values, self.stack[0][0].kernel.dtype)  # [tokens, features]
        for directions in self.stack:
            outputs = []
            for direction in directions:
                products = tf.matmul(flat, direction.kernel)  # [tokens, width]
                if direction.input_bias is not None:
                    products += direction.input_bias
                slot, order, starts = slots[direction.backward]
                read = direction.run(tf.gather(products, order), starts)
                outputs.append(tf.gather(read, slot))  # [tokens, units]
            flat = tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return inputs.with_flat_values(flat)


def packing(row_splits: tf.Tensor) -> dict[bool, tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Where each token goes when a batch is packed step by step, the sequences longest
    first (as PyTorch's PackedSequence): the recurrent product then never runs on
    padding. row_splits [batch + 1] -> for reading forwards (False) and backwards (True):
    each token's slot [tokens] int32, the token in each slot [tokens] int32 (computed
    once here for every layer) and each step's first slot [steps + 2] int32 (the last
    repeats the total)."""
    row_splits = tf.cast(row_splits, tf.int32)
    lengths = row_splits[1:] - row_splits[:-1]
    rows = tf.repeat(tf.range(tf.size(lengths)), lengths)  # each token's sequence
    position = tf.range(row_splits[-1]) - tf.gather(row_splits, rows)
    # Rank of each sequence by length, longest first: running sequences are a prefix.
    rank = tf.math.invert_permutation(tf.argsort(lengths, direction="DESCENDING",
                                                 stable=True))
    # running[t]: sequences longer than t; a step's rows start after the earlier steps'.
    running = tf.reduce_sum(tf.cast(
        lengths[None, :] > tf.range(tf.reduce_max(tf.concat([lengths, [0]], 0)))[:, None],
        tf.int32), axis=1)
    starts = tf.concat([[0], tf.cumsum(running), [row_splits[-1]]], axis=0)
    step = {False: position, True: tf.gather(lengths, rows) - 1 - position}
    slots = {backward: tf.gather(starts, t) + tf.gather(rank, rows)
             for backward, t in step.items()}
    return {backward: (slot, tf.math.invert_permutation(slot), starts)
            for backward, slot in slots.items()}
