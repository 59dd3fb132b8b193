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
    for scheduling in results["runs"].values():
        assert [r["clients"] for r in scheduling["concurrency"]] == [1, 4]
        assert all(r["errors"] == 0 and r["sentences_per_second"] > 0
                   for r in scheduling["concurrency"])
        mixed = scheduling["mixed"]
        assert mixed["errors"] == 0 and mixed["short"]["p99_ms"] and mixed["long"]["p99_ms"]
        overload = scheduling["overload"]
        assert overload["answered"] == overload["sent"] and overload["hung"] == 0
        assert scheduling["server_exit_code"] == 0
    assert output.with_suffix(".png").stat().st_size > 10_000
