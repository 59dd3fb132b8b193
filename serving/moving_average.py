"""The exponential moving average that serving's measurements keep (call lengths,
start times, throughput, slot turnover): recent enough to follow the load, smooth
enough not to chase one odd call."""

from __future__ import annotations

from dataclasses import dataclass

SMOOTHING = 0.2  # default weight of the newest observation


@dataclass
class MovingAverage:
    """Exponential moving average of a value (None before the first)."""

    weight: float = SMOOTHING
    value: float | None = None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else (1 - self.weight) * self.value + self.weight * x
