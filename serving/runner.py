"""A request-level batch through an export's signature (on the batcher's worker thread)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from model.contract import DECODE_STEPS, SOURCE_TOKENS, FunctionContract, per_input
from serving import metrics
from serving.task import Outputs, Row


class SignatureRunner:
    """Runs batches of rows through `signature` (following `contract`).

    Args:
      model: metric label for the batch's padding and decode steps ("" records none).
    """

    def __init__(self, signature, contract: FunctionContract, model: str = ""):
        self.signature = signature
        self.contract = contract
        self.model = model

    def __call__(self, key: Hashable, rows: Sequence[Row]) -> list[Outputs]:
        """The batcher's `run_batch`: rows [batch] -> one output dict per row."""
        return self.run(rows, self.model)

    def run(self, rows: Sequence[Row], label: str = "") -> list[Outputs]:
        out = self.contract.call(self.signature, rows)
        if label and SOURCE_TOKENS in out:  # exports before step decoding lack them
            metrics.PADDING_RATIO.labels(label).observe(padding_ratio(out[SOURCE_TOKENS]))
        if label and DECODE_STEPS in out:  # decoders only
            metrics.DECODE_STEPS.labels(label).observe(int(out[DECODE_STEPS]))
        return per_input(out, len(rows))


def padding_ratio(source_tokens: Sequence[int]) -> float:
    """Share of the source positions in a padded batch that are padding."""
    width = max(source_tokens, default=0)
    return 1.0 - sum(source_tokens) / (width * len(source_tokens)) if width else 0.0
