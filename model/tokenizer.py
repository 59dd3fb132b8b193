"""Subword tokenizer: SentencePiece trained offline, applied in-graph by tensorflow-text.

Training and serving use the same tensorflow-text op on the same serialized
model, so the exported SavedModel needs no Python tokenizer on the serving path.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text

log = logging.getLogger(__name__)

# Fixed special ids, so that 0 can be the padding id that Keras masks.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: str = "unigram"
    character_coverage: float = 1.0
    # Sentences sampled for training SentencePiece (0 = all): keeps it fast.
    input_sentence_size: int = 200_000


def train_sentencepiece(texts: Iterable[str], config: TokenizerConfig) -> bytes:
    """Trains a SentencePiece model on `texts` and returns its serialized proto."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        input_sentence_size=config.input_sentence_size,
        shuffle_input_sentence=True,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        # Small corpora (tests) cannot always fill the requested vocabulary.
        hard_vocab_limit=False,
        minloglevel=2,
    )
    proto = model.getvalue()
    log.info("trained SentencePiece %s model, %d pieces",
             config.model_type, spm.SentencePieceProcessor(model_proto=proto).vocab_size())
    return proto


class SubwordTokenizer(tf.Module):
    """In-graph tokenize/detokenize around a serialized SentencePiece model.

    A `tf.Module`, so the model proto is saved inside any SavedModel that tracks it.
    """

    def __init__(self, model_proto: bytes):
        super().__init__(name="subword_tokenizer")
        self.model_proto = model_proto
        self.vocab_size = spm.SentencePieceProcessor(model_proto=model_proto).vocab_size()
        self._sp = tf_text.SentencepieceTokenizer(model=model_proto, out_type=tf.int32)

    def tokenize(self, texts: tf.Tensor, max_tokens: int | tf.Tensor | None = None,
                 add_eos: bool = True) -> tf.RaggedTensor:
        """[batch] strings -> [batch, (time)] int32 ids, truncated, EOS appended."""
        ids = self._sp.tokenize(texts)
        if max_tokens is not None:
            ids = ids[:, : max_tokens - (1 if add_eos else 0)]
        if add_eos:
            eos = tf.fill([ids.nrows(), 1], tf.constant(EOS_ID, tf.int32))
            ids = tf.concat([ids, eos], axis=1)
        return ids

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """[batch, (time)] ids (no specials) -> [batch] strings."""
        return self._sp.detokenize(ids)
