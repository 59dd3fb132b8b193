"""The reverse task's export contract, on the same pieces as the built-in ones."""

from __future__ import annotations

from model.contract import (
    BEAM_WIDTH,
    DECODE_STEPS,
    LENGTH_PENALTY,
    MAX_LENGTH,
    NBEST,
    NUM_HYPOTHESES,
    SEED,
    SOURCE_TOKENS,
    TEMPERATURE,
    TEXTS,
    TOP_K,
    TOP_P,
    FunctionContract,
    TaskContract,
    each_input,
)

ALPHABET = "abcdefgh"
MAX_CHARS = 12  # input characters kept (EOS included)

OPTIONS = (LENGTH_PENALTY, MAX_LENGTH, TEMPERATURE, TOP_K, TOP_P, SEED)
REVERSE = TaskContract(
    task="reverse",
    signature=FunctionContract("reverse", inputs=(TEXTS, BEAM_WIDTH, NUM_HYPOTHESES, *OPTIONS),
                               outputs=(*NBEST, SOURCE_TOKENS, DECODE_STEPS)),
    begin=FunctionContract("begin", inputs=(TEXTS, BEAM_WIDTH, *map(each_input, OPTIONS)),
                           outputs=NBEST),
)
