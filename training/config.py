"""Typed training configurations and their named profiles (see training.flags for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.flags import option as _opt


@dataclass(frozen=True)
class TranslateConfig:
    """Encoder-decoder translation on the Bible (or your own parallel TSV files)."""

    source: str = _opt("en", "source language: en, fr, es, de, it, pt, en-kjv, en-bbe "
                             "(see DATA.md)")
    target: str = _opt("fr", "target language (same codes as --source)")
    train_file: str = _opt("", "your own training pairs, source<TAB>target per line; "
                               "empty = the Bible corpus")
    dev_file: str = _opt("", "your own dev pairs; empty = 10%% of --train-file (and 10%% "
                             "for test), or the Bible's held-out dev and test books")
    model_name: str = _opt("", "export name under --export-base; empty = translate-SRC-TGT")
    max_train_examples: int = _opt(0, "train on at most this many pairs, 0 = all")
    max_eval_examples: int = _opt(0, "evaluate on at most this many dev (and test) pairs, "
                                     "0 = all")
    vocab_size: int = _opt(8000, "SentencePiece vocabulary, shared by both languages")
    embedding_dim: int = _opt(256, "subword embedding size")
    units: int = _opt(512, "decoder units; each encoder direction has half")
    encoder_layers: int = _opt(1, "stacked bidirectional encoder layers")
    cell: str = _opt("lstm", "recurrent cell of encoder and decoder: lstm, gru or rnn")
    dropout: float = _opt(0.2, "dropout on recurrent inputs and decoder outputs")
    label_smoothing: float = _opt(0.1, "share of each target's probability spread over the "
                                       "vocabulary")
    max_source_tokens: int = _opt(64, "source subwords kept per sentence (EOS included)")
    max_target_tokens: int = _opt(80, "target subwords kept per sentence (EOS included)")
    batch_size: int = _opt(64, "sentence pairs per training step")
    epochs: int = _opt(10, "passes over the training data")
    learning_rate: float = _opt(1e-3, "Adam learning rate")
    clip_norm: float = _opt(1.0, "gradient clipping by global norm")
    patience: int = _opt(3, "stop after this many epochs without a better dev loss and keep "
                            "the best weights (0 = never stop early)")
    max_length_ratio: float = _opt(2.0, "outputs may have ratio x source subwords + 10 "
                                        "(0 = no relative limit); exported as the default")
    eval_beam_width: int = _opt(4, "beam width of the final BLEU (greedy is measured too)")
    eval_length_penalty: float = _opt(0.6, "GNMT length penalty alpha of the final BLEU")
    export_base: str = _opt("exports", "where the SavedModel goes: EXPORT_BASE/NAME/VERSION/")
    run_dir: str = _opt("runs", "RUN_DIR/NAME/ keeps TensorBoard logs, the tokenizer and the "
                                "epoch backup a rerun resumes from")
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
        "full": dict(dropout=0.3, epochs=12),
    },
}
