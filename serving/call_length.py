"""How many steps each `advance` call of a running decode takes.

A call has its own cost besides its steps (binding the search state's tensors,
regrouping joining rows, Python between calls), and an input that shares its calls
with others waits for calls to end: half a call, on average, past its own end to be
answered, and a whole call to join, since what brings a new input (a client's next
request, a slot freed for a queued one) comes at a call's end, while the next call
runs. With calls of s steps of p seconds, a call's own cost c, inputs that decode L
steps and a share w of them sharing calls, an input's time is about
L (p + c / s) + 1.5 w s p, least at s = sqrt(L c / (1.5 w p)). Measured in the server
at 64 quick translations, c is about p (6 against 8.2 ms), which makes it
sqrt(L / (1.5 w)) steps, L averaged over the inputs that ended and w = 1 - 1/n over the
inputs per call (n): 6 for 64 translations of 46 steps, 7 for 4 translations of 57, 3
for 16 captions of 10, and as long as allowed for a lone client's input (w = 0), nobody
waiting on its calls. Swept by hand in the server (calls of a fixed 1, 2, 4, 7 or 12
steps) the best were 4-12 steps at 64 clients and 4-7 at 4. The rule before this one
filled a fixed 20 ms a call: 2 steps at 64 translations, 10 % slower. (Without the 1.5,
7 and 9 steps at 64 and 4 clients, the load benchmark could not tell the two apart.)

Measuring c and p apart did not hold up: a regression over calls of two alternating
lengths was noisy enough on captions (whose calls often end early) to swing between
1 and 64 steps; the time between calls counts the decode thread's waits for the GIL
behind the event loop's per-request work, which longer calls do not save, and made
calls too long at 4 clients (25-27 against 30-34 sentences/s).

An upper bound on a call's time (the server's `max_join_delay_ms`) caps the result at
the steps that fit at the measured time per step (a call's own cost included, so
rounded up: rounded down, calls whose one step filled the bound stayed at one step).
Until an input has ended (L unknown), calls are as long as that bound allows.
"""

from __future__ import annotations

import math

from serving.moving_average import MovingAverage

MAX_STEPS_PER_CALL = 64
WAITING = 1.5  # calls an input that shares its calls waits for in its life


class CallLength:
    """Chooses the steps per call of one running decode from what it measures (module
    docstring)."""

    def __init__(self) -> None:
        self._step = MovingAverage()  # seconds per step of a call, its own cost included
        self._decode_steps = MovingAverage()  # L: steps an input decodes
        self._rows = MovingAverage()  # n: inputs per call
        self._forced = False  # whether the latest call was a forced single step

    def best(self, max_seconds: float) -> int:
        """Steps per call: sqrt(L / (1.5 w)), within about `max_seconds` a call; one before
        a call was timed."""
        if self._step.value is None:
            return 1
        best = min(math.ceil(max_seconds / self._step.value), MAX_STEPS_PER_CALL)
        sharing = 1 - 1 / self._rows.value  # w
        if self._decode_steps.value is not None and sharing > 0:
            best = min(best, round(math.sqrt(self._decode_steps.value / (WAITING * sharing))))
        return max(1, best)

    @property
    def seconds_per_step(self) -> float | None:
        """A step's measured time, a call's own cost included (None before a call was
        timed)."""
        return self._step.value

    def next(self, max_seconds: float, rows: int) -> int:
        """Steps for the next call, of `rows` inputs, taking about `max_seconds` at most
        (0: one step)."""
        self._rows.add(rows)
        self._forced = max_seconds <= 0
        return 1 if self._forced else self.best(max_seconds)

    def observe(self, steps: int, seconds: float) -> None:
        """A call took `steps` steps (fewer than asked if every input ended) in `seconds`.
        A forced single step is not timed: all of a call's own cost on one step."""
        if not self._forced:
            self._step.add(seconds / max(steps, 1))

    def ended(self, decode_steps: int) -> None:
        """An input ended after `decode_steps` steps."""
        self._decode_steps.add(decode_steps)
