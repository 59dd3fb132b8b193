"""The character LM's backbones: the seed's "hello" example for each recurrent cell,
WaveNet's cached generation step against its full convolution, prompts read in batches,
and the character vocabulary."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.char_lm import CharLM, CharLMConfig
from model.characters import Characters, alphabet_of
from model.tokenizer import UNK_ID

HELLO = "helo"  # the seed's vocabulary: h, e, l, o


def greedy(model: CharLM, start: int, steps: int) -> list[int]:
    """Feeds `start`, then each most likely next character, one step at a time."""
    state, token, out = model.initial_state(1), tf.constant([start]), [start]
    for _ in range(steps):
        log_probs, state = model.step(token, state)
        token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        out.append(int(token[0]))
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_seeds_hello_example(cell):
    """Trained with teacher forcing on "hello" (inputs "hell", targets "ello"), greedy
    generation from "h" gives "hello": after the first "l" the model must know whether
    it saw one "l" or two, which only its state can tell."""
    keras.utils.set_random_seed(1)
    ids = [HELLO.index(c) for c in "hello"]
    model = CharLM(len(HELLO), CharLMConfig(backbone=cell, embedding_dim=8, units=16,
                                            dropout=0.0))
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.array([ids[:-1]] * 8), np.array([ids[1:]] * 8)
    model.fit(x, y, epochs=150, batch_size=8, verbose=0)
    assert "".join(HELLO[i] for i in greedy(model, HELLO.index("h"), 4)) == "hello"


@pytest.mark.parametrize("backbone", ["rnn", "lstm", "gru", "wavenet"])
def test_reading_whole_and_stepping_give_the_same_distributions(backbone):
    """The step function the decoder runs gives, position by position, exactly what the
    model computes over the whole sequence in training, also after a prompt read in one
    pass (`read`) whose state the steps continue from."""
    keras.utils.set_random_seed(2)
    model = CharLM(11, CharLMConfig(backbone=backbone, embedding_dim=8, units=12, layers=2,
                                    dilation_cycle=2, skip_channels=10))
    chars = tf.constant(np.random.default_rng(0).integers(0, 11, (3, 17)), tf.int32)
    whole = tf.nn.log_softmax(model(chars)).numpy()
    for prompt in (0, 6):
        state = model.initial_state(3)
        if prompt:
            _, state = model.read(chars[:, :prompt], state)
        for t in range(prompt, 17):
            log_probs, state = model.step(chars[:, t], state)
            np.testing.assert_allclose(log_probs.numpy(), whole[:, t], atol=1e-5,
                                       err_msg=f"position {t} after a prompt of {prompt}")


def test_wavenet_sees_exactly_its_receptive_field():
    """Dilations 1, 2, 4, 8, 1, 2 with kernel width 2: each position sees itself and the
    18 before it, and nothing after it (causal)."""
    keras.utils.set_random_seed(3)
    model = CharLM(7, CharLMConfig(backbone="wavenet", embedding_dim=6, units=8, layers=6,
                                   dilation_cycle=4, skip_channels=8))
    assert model.backbone.dilations == [1, 2, 4, 8, 1, 2]
    assert model.backbone.receptive_field == 19
    chars = np.random.default_rng(1).integers(0, 7, (1, 40))
    base = model(tf.constant(chars)).numpy()[0]
    t = 30
    for changed, seen in ((t - 18, True), (t - 19, False), (t + 1, False)):
        other = chars.copy()
        other[0, changed] = (other[0, changed] + 1) % 7
        moved = not np.allclose(model(tf.constant(other)).numpy()[0, t], base[t], atol=1e-6)
        assert moved == seen, f"position {t} {'should' if seen else 'should not'} see {changed}"


@pytest.mark.parametrize("backbone", ["lstm", "gru", "wavenet"])
def test_padded_prompts_are_read_as_if_alone(backbone):
    """Prompts of different lengths share a batch: each row's state is the one after its
    own characters, whatever padding follows them (what `begin` relies on)."""
    keras.utils.set_random_seed(4)
    model = CharLM(9, CharLMConfig(backbone=backbone, embedding_dim=6, units=8, layers=2,
                                   dilation_cycle=2, skip_channels=8))
    rows = [[4, 5, 6, 7, 8], [5, 4], [6]]
    padded = tf.constant([r + [0] * (5 - len(r)) for r in rows], tf.int32)
    _, together = model.read(padded, model.initial_state(3), lengths=tf.constant([5, 2, 1]))
    for i, row in enumerate(rows):
        _, alone = model.read(tf.constant([row]), model.initial_state(1))
        for part, (batched, single) in enumerate(zip(together, alone, strict=True)):
            np.testing.assert_allclose(batched[i].numpy(), single[0].numpy(), atol=1e-5,
                                       err_msg=f"row {i}, state part {part}")


def test_characters_map_unseen_ones_to_unk_and_back():
    characters = Characters(alphabet_of("banana bread\n"))
    assert characters.alphabet == "abn\n der"  # by count, then code point
    ids = characters.encode(tf.constant(["bad", "Ωa", ""]))
    assert ids.to_list() == [[5, 4, 9], [UNK_ID, 4], []]
    assert characters.decode(ids).numpy().tolist() == [b"bad", "\ufffda".encode(), b""]
    np.testing.assert_array_equal(characters.encode_numpy("bad\u03a9"), [5, 4, 9, UNK_ID])
