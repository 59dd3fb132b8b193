"""Typed training configurations and their named profiles (see training.flags for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.flags import option as _opt


@dataclass(frozen=True)
class TranslateConfig:
    """Encoder-decoder translation on the Bible (or your own parallel TSV files)."""

    source: str = _opt("en", "source language: en, fr, es, de, it, pt, en-kjv, en-bbe")
    target: str = _opt("fr", "target language (same codes as --source)")
    train_file: str = _opt("", "your own training pairs, source<TAB>target per line; "
                               "empty = the Bible corpus")
    dev_file: str = _opt("", "your own dev pairs; empty = 10%% of --train-file, or the "
                             "Bible's held-out dev books")
    model_name: str = _opt("", "export name under --export-base; empty = translate-SRC-TGT")
    max_train_examples: int = _opt(0, "train on at most this many pairs, 0 = all")
    max_dev_examples: int = _opt(0, "evaluate on at most this many dev pairs, 0 = all")
    vocab_size: int = _opt(8000, "SentencePiece vocabulary, shared by both languages")
    embedding_dim: int = _opt(256, "subword embedding size")
    units: int = _opt(512, "recurrent units in the encoder and the decoder")
    cell: str = _opt("lstm", "recurrent cell: lstm, gru or rnn")
    dropout: float = _opt(0.1, "dropout on recurrent inputs and decoder outputs")
    max_source_tokens: int = _opt(64, "source subwords kept per sentence (EOS included)")
    max_target_tokens: int = _opt(80, "target subwords kept per sentence (EOS included)")
    batch_size: int = _opt(64, "sentence pairs per training step")
    epochs: int = _opt(10, "passes over the training data")
    learning_rate: float = _opt(1e-3, "Adam learning rate")
    clip_norm: float = _opt(1.0, "gradient clipping by global norm")
    eval_beam_width: int = _opt(4, "beam width for the dev BLEU at the end")
    eval_length_penalty: float = _opt(0.6, "GNMT length penalty alpha for the dev BLEU")
    export_base: str = _opt("exports", "where the SavedModel goes: EXPORT_BASE/NAME/VERSION/")
    run_dir: str = _opt("runs", "TensorBoard logs: RUN_DIR/NAME/")
    seed: int = _opt(1234, "random seed for shuffling and initialisation")
    mixed_precision: bool = _opt(False, "train in mixed_float16 (for GPUs with tensor cores)")
    jit_compile: bool = _opt(False, "compile the training step with XLA")

    @property
    def name(self) -> str:
        return self.model_name or f"translate-{self.source}-{self.target}"


# Named profiles: `quick` trains in minutes on 2 CPU cores for demos, `full`
# trains the real model (hours on a CPU, far less on a GPU).
PROFILES: dict[type, dict[str, dict[str, Any]]] = {
    TranslateConfig: {
        "quick": dict(vocab_size=4000, embedding_dim=128, units=256, max_source_tokens=48,
                      max_target_tokens=64, batch_size=64, epochs=3, learning_rate=2e-3),
        "full": {},
    },
}
