"""The load benchmark script runs end to end (its figures are for humans, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_writes_json_and_png(tiny_export, tmp_path):
    _, base = tiny_export
    output = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", str(base), "--model", "toy-en-fr",
         "--concurrency", "1", "4", "--overload-seconds", "1", "--mixed-requests", "32",
         "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(output.with_suffix(".json").read_text())
    assert set(results["runs"]) == {"step", "request"}
    for name, scheduling in results["runs"].items():
        assert [r["clients"] for r in scheduling["concurrency"]] == [1, 4]
        assert all(r["errors"] == 0 and r["sentences_per_second"] > 0
                   for r in scheduling["concurrency"])
        # The step decoder alone splits step scheduling's ratio in two.
        for row in scheduling["concurrency"]:
            assert ("engine_sentences_per_second" in row) == (name == "step")
            if name == "step":
                assert row["engine_sentences_per_second"] > 0
                assert row["engine_over_offline"] * row["server_over_engine"] == pytest.approx(
                    row["server_over_offline"], rel=0.01)
        mixed = scheduling["mixed"]
        assert mixed["errors"] == 0 and mixed["short"]["p99_ms"] and mixed["long"]["p99_ms"]
        overload = scheduling["overload"]
        assert overload["answered"] == overload["sent"] and overload["hung"] == 0
        assert scheduling["server_exit_code"] == 0
    assert output.with_suffix(".png").stat().st_size > 10_000


def test_bench_runs_without_the_mixed_workload(tiny_export, tmp_path):
    """`--mixed-requests 0` leaves that workload out (it used to fail: "0 requests cannot
    keep 16 clients busy"), and the plot says so."""
    _, base = tiny_export
    output = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", str(base), "--model", "toy-en-fr",
         "--scheduling", "step", "--concurrency", "1", "--mixed-requests", "0",
         "--overload-seconds", "0", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    (scheduling,) = json.loads(output.with_suffix(".json").read_text())["runs"].values()
    assert "mixed" not in scheduling and scheduling["concurrency"][0]["errors"] == 0
    assert output.with_suffix(".png").stat().st_size > 10_000


def test_closed_loop_clients_warm_up_untimed_and_are_timed_while_all_are_busy(server):
    """`drive`: each client's warm-up requests (indices past `total`) all end before the
    first timed one starts; the window ends when the first client runs out, so it
    counts no more answers than were timed, and the tail of the run lies outside it."""
    import threading
    import time

    from benchmarks.load import WARM_UP_PER_CLIENT, drive, request

    target, _, _ = server
    calls: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def send(client, i: int) -> int:
        started = time.perf_counter()
        client.stub.Translate(request("toy-en-fr", "one two three", 2), timeout=30)
        with lock:
            calls.append((i, started, time.perf_counter()))
        return 1

    began = time.perf_counter()
    run = drive(target, 4, 24, send)
    elapsed = time.perf_counter() - began
    warm = [c for c in calls if c[0] >= 24]
    timed = [c for c in calls if c[0] < 24]
    assert len(warm) == 4 * WARM_UP_PER_CLIENT and sorted(c[0] for c in timed) == list(range(24))
    assert max(end for _, _, end in warm) <= min(start for _, start, _ in timed)
    assert len(run.latencies) == 24 and not run.errors
    assert 0 < run.answered == run.units < 24
    assert 0 < run.seconds < elapsed


def test_closed_loop_throughput_of_clients_answered_together_is_clients_per_batch_time(
        server):
    """`drive` with every client's requests answered together, one 50 ms batch after
    another (as request scheduling batches closed-loop clients): throughput is clients
    per batch time. Answers over the window's length would be a batch short, the one
    whose answers the window's end cuts off (12 answers in 4 batch times here)."""
    import threading
    import time

    from benchmarks.load import drive

    together = threading.Barrier(4)

    def send(client, i: int) -> int:
        together.wait()  # the batch starts when every client's request is in
        time.sleep(0.05)
        return 3

    run = drive(server[0], 4, 16, send)
    assert run.answers_per_second() == pytest.approx(4 / 0.05, rel=0.15)
    assert run.units_per_second() == pytest.approx(3 * run.answers_per_second())
    assert run.answered / run.seconds < 0.85 * 4 / 0.05  # the count the window cuts
