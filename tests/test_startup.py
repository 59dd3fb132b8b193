"""What a user sees first: every entry point starts quietly (no TensorFlow banner), the
server's log says what it loaded from where, and a client pointed at nothing says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from serving.process import free_port
from tests.conftest import ROOT

BANNER = re.compile(r"cuInit|oneDNN|cpu_feature_guard|cudart|absl::InitializeLog|"
                    r"^[IWEF]\d{4} \d", re.MULTILINE)
ENTRY_POINTS = [
    ["serving", "--help"],
    ["training.run", "--help"],
    ["training.run", "translate", "--help"],
    ["benchmarks.decode", "--help"],
    ["benchmarks.load", "--help"],
    ["benchmarks.caption", "--help"],
    ["benchmarks.tag", "--help"],
    ["benchmarks.generate", "--help"],
    ["serving.client", "--help"],
]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def without_log_level() -> dict:
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.mark.parametrize("command", ENTRY_POINTS, ids=" ".join)
def test_entry_points_start_quietly(command):
    out = run(*command, env=without_log_level())
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    assert not BANNER.search(out.stderr), out.stderr


def test_a_log_level_brings_tensorflows_lines_back():
    out = run("serving", "--help", env={**without_log_level(), "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert out.returncode == 0
    assert BANNER.search(out.stderr), "TensorFlow printed nothing at all here"


@pytest.mark.slow
def test_the_server_log_is_quiet_and_says_what_it_loaded(server):
    _, _, log = server
    text = log.read_text()
    assert not BANNER.search(text), text
    assert re.search(r"loaded toy-en-fr version 1 \(translate, step scheduling\) from \S+"
                     r"toy-en-fr/1", text), text


@pytest.mark.slow
def test_the_server_sets_tensorflows_threads_before_it_starts(request_server):
    _, _, log = request_server
    assert "TensorFlow threads: 1 intra-op, 2 inter-op" in log.read_text()


def test_thread_flags_are_refused_where_tensorflow_already_runs(capsys):
    """In a process whose TensorFlow started (this one), the pools are fixed: setting
    them says so instead of failing later."""
    from serving.server import main

    with pytest.raises(SystemExit) as exited:
        main(["--intra-op-threads", "3", "--model-base-path", "nowhere"])
    assert exited.value.code == 2
    assert "need a process whose TensorFlow has not started yet" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["health"], ["health", "--wait", "1"],
                                     ["translate", "one"], ["models"]])
def test_a_client_pointed_at_nothing_says_so_and_names_the_flag(command):
    target = f"127.0.0.1:{free_port()}"
    out = run("serving.client", "--target", target, "--timeout", "5", *command)
    assert out.returncode == 1
    assert f"nothing answers at {target}" in out.stderr and "--target" in out.stderr, \
        out.stderr
