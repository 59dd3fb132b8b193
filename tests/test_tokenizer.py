"""The in-graph SentencePiece tokenizer: round trip, specials, truncation, export."""

from __future__ import annotations

import tensorflow as tf

from model.tokenizer import EOS_ID, PAD_ID, SubwordTokenizer, TokenizerConfig, train_sentencepiece
from tests.conftest import toy_pairs

TEXTS = [text for pair in toy_pairs(200) for text in pair]


def make_tokenizer() -> SubwordTokenizer:
    return SubwordTokenizer(train_sentencepiece(TEXTS, TokenizerConfig(vocab_size=40)))


def test_round_trip_restores_the_text():
    tokenizer = make_tokenizer()
    samples = ["one two three", "quatre cinq six sept", "ten"]
    ids = tokenizer.tokenize(tf.constant(samples), add_eos=False)
    assert tokenizer.detokenize(ids).numpy().tolist() == [s.encode() for s in samples]


def test_eos_is_appended_and_padding_id_never_produced():
    ids = make_tokenizer().tokenize(tf.constant(["one two", "neuf"]))
    for row in ids.to_list():
        assert row[-1] == EOS_ID
        assert PAD_ID not in row


def test_truncation_keeps_eos_within_the_limit():
    ids = make_tokenizer().tokenize(tf.constant([" ".join(["seven eight nine"] * 20)]),
                                    max_tokens=6)
    assert ids.row_lengths().numpy().tolist() == [6]
    assert ids.to_list()[0][-1] == EOS_ID


def test_tokenizer_survives_a_savedmodel_round_trip(tmp_path):
    tokenizer = make_tokenizer()

    class Wrapper(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def ids(self, texts):
            return self.tokenizer.tokenize(texts).to_tensor()

    tf.saved_model.save(Wrapper(), str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    texts = tf.constant(["deux trois", "one"])
    expected = tokenizer.tokenize(texts).to_tensor()
    assert loaded.ids(texts).numpy().tolist() == expected.numpy().tolist()
