"""Shared fixtures: a tiny translation model trained once per session, and a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.startup import import_tensorflow
from serving.process import ServerProcess

import_tensorflow()  # quietly, before any test module imports it

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
    from training.driver import train
    from training.translate import TASK, TranslateConfig

    base = tmp_path_factory.mktemp("exports")
    config = TranslateConfig(
        train_file=str(toy_corpus), model_name="toy-en-fr", vocab_size=40, embedding_dim=32,
        units=64, dropout=0.1, max_source_tokens=16, max_target_tokens=20, batch_size=32,
        epochs=8, learning_rate=5e-3, export_base=str(base),
        run_dir=str(tmp_path_factory.mktemp("runs")))
    return train(TASK, config), base


def _serve(tiny_export, scheduling: str, *flags: str):
    _, base = tiny_export
    process = ServerProcess(base, "--poll-seconds", "0", "--scheduling", scheduling, *flags)
    process.wait_until_serving()
    yield process.target, process.metrics_url, process.log_path
    code = process.stop()
    assert code == 0, "server did not exit 0 on SIGTERM:\n" + process.log_path.read_text()


@pytest.fixture(scope="session")
def server(tiny_export):
    """The tiny model served (step scheduling, the default) for the whole session;
    yields (target, metrics_url, log)."""
    yield from _serve(tiny_export, "step")


@pytest.fixture(scope="session")
def request_server(tiny_export):
    """The same, with request-level scheduling, and TensorFlow's thread pools set (one
    thread per op, two ops at once) as the flags allow."""
    yield from _serve(tiny_export, "request", "--intra-op-threads", "1",
                      "--inter-op-threads", "2")


@pytest.fixture(params=["step", "request"])
def scheduling(request) -> str:
    return request.param


@pytest.fixture
def any_server(scheduling, request):
    """The session server of each scheduling policy in turn."""
    return request.getfixturevalue("server" if scheduling == "step" else "request_server")
