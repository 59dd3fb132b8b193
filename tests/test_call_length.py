"""Steps per `advance` call, from what the decode measures (serving/call_length.py)."""

import math

from serving.call_length import CallLength


def drive(length: CallLength, calls: int, decode_steps: int, step: float, own: float,
          max_seconds: float = 0.1, rows: int = 64) -> list[int]:
    """A decode of `rows` inputs whose calls take `own` + steps x `step` seconds and
    whose inputs end after `decode_steps` steps, one per call: the steps asked for,
    call by call."""
    asked = []
    for _ in range(calls):
        steps = length.next(max_seconds, rows)
        asked.append(steps)
        length.observe(steps, own + steps * step)
        length.ended(decode_steps)
    return asked


def test_long_decodes_get_long_calls_and_short_ones_short_calls():
    """64 translations of 46 steps: 6 steps a call (swept by hand in the server, 4-12
    were best; the 20 ms rule gave 2); 4 of 57: 7 (4-7 were best); 16 captions of 10
    steps: 3."""
    translations = drive(CallLength(), 30, 46, 0.0082, 0.006)
    few = drive(CallLength(), 30, 57, 0.0012, 0.002, rows=4)
    captions = drive(CallLength(), 30, 10, 0.0019, 0.002, rows=16)
    assert translations[0] == few[0] == captions[0] == 1, "nothing measured yet"
    assert translations[-1] == round(math.sqrt(46 / (1.5 * (1 - 1 / 64)))) == 6
    assert few[-1] == round(math.sqrt(57 / (1.5 * (1 - 1 / 4)))) == 7
    assert captions[-1] == round(math.sqrt(10 / (1.5 * (1 - 1 / 16)))) == 3


def test_calls_stay_within_the_join_budget():
    """64 translations, a 20 ms budget: 6 steps (55 ms) do not fit; calls take the steps
    that 20 ms holds at the measured time per step, rounded up (2 steps of 11 ms, a
    call's own cost included)."""
    asked = drive(CallLength(), 30, 46, 0.0082, 0.006, max_seconds=0.020)
    assert set(asked[5:]) == {2}


def test_a_lone_input_decodes_in_calls_as_long_as_the_budget_allows():
    """Nothing waits on a lone input's calls (nobody to join, nobody else to answer)."""
    asked = drive(CallLength(), 30, 46, 0.002, 0.001, max_seconds=0.1, rows=1)
    assert asked[-1] == math.ceil(0.1 / (0.002 + 0.001 / asked[-2]))


def test_a_join_budget_shorter_than_a_step_gives_one_step_calls_from_the_first():
    """A server run with --max-join-delay-ms 0.001 (every step answered at once, as
    streams and tests want): one step per call, from the first call on."""
    assert set(drive(CallLength(), 20, 46, 0.008, 0.003, max_seconds=0.00001)) == {1}


def test_a_forced_single_step_is_not_timed():
    """A stream that just joined gets one step (max_seconds 0); that call's time, all of
    a call's own cost on one step, must not make the next calls shorter."""
    length = CallLength()
    before = drive(length, 20, 46, 0.002, 0.003, max_seconds=0.020)[-1]
    assert length.next(0.0, 64) == 1
    length.observe(1, 0.5)  # a slow one-off call
    assert length.best(0.020) == before
