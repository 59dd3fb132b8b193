"""Shared fixtures: a tiny translation model trained once per session, and a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent

# A toy "translation": English number words to French ones, enough to train a
# model in seconds and for its outputs to mean something.
EN = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
FR = ["un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"]


def toy_pairs(n: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    import random

    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        ids = [rng.randrange(len(EN)) for _ in range(rng.randint(1, 4))]
        pairs.append((" ".join(EN[i] for i in ids), " ".join(FR[i] for i in ids)))
    return pairs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in toy_pairs()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, toy_corpus):
    """Trains a tiny translator on the toy corpus (about 10 s) and exports it.

    It learns the toy task (BLEU ~100), so served answers can be checked for content.
    Returns (report, export base).
    """
    from training.config import TranslateConfig
    from training.translate import train_translation

    base = tmp_path_factory.mktemp("exports")
    config = TranslateConfig(
        train_file=str(toy_corpus), model_name="toy-en-fr", vocab_size=40, embedding_dim=32,
        units=64, dropout=0.1, max_source_tokens=16, max_target_tokens=20, batch_size=32,
        epochs=8, learning_rate=5e-3, export_base=str(base),
        run_dir=str(tmp_path_factory.mktemp("runs")))
    return train_translation(config), base


@pytest.fixture(scope="session")
def server(tiny_export):
    """A real `python -m serving` process on free ports; yields (target, metrics_url)."""
    _, base = tiny_export
    port, metrics_port = free_port(), free_port()
    log_path = base.parent / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-base-path", str(base), "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(metrics_port), "--grace-seconds", "2"],
        cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    from serving.client import RecurClient

    target = f"127.0.0.1:{port}"
    try:
        with RecurClient(target) as client:
            client.wait_until_serving(120)
    except TimeoutError:
        process.kill()
        pytest.fail("server did not become SERVING:\n" + log_path.read_text())
    yield target, f"http://127.0.0.1:{metrics_port}/metrics", log_path
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, "server did not exit 0 on SIGTERM:\n" + log_path.read_text()
