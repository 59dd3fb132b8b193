"""The recurrent cell flag every model kind shares: rnn (the vanilla RNN), lstm, gru."""

from __future__ import annotations

import keras

RNN_LAYERS: dict[str, type[keras.layers.RNN]] = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "rnn": keras.layers.SimpleRNN,
}


def recurrent_layer(cell: str, units: int, **kwargs) -> keras.layers.RNN:
    """A Keras recurrent layer of the named cell (ValueError naming the choices)."""
    if cell not in RNN_LAYERS:
        raise ValueError(f"cell must be one of {sorted(RNN_LAYERS)}, got {cell!r}")
    return RNN_LAYERS[cell](units, **kwargs)
