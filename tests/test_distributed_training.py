"""tf.distribute through the shared driver: two workers on localhost train one model
together (MultiWorkerMirroredStrategy), and MirroredStrategy's export serves like any."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from serving.process import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TOY = ["--vocab-size", "40", "--embedding-dim", "32", "--units", "64",
       "--max-source-tokens", "16", "--max-target-tokens", "20", "--batch-size", "32",
       "--max-eval-examples", "40", "--patience", "0"]


def weights(path: Path) -> list[tuple[str, np.ndarray]]:
    arrays: list[tuple[str, np.ndarray]] = []
    with h5py.File(path) as f:
        f.visititems(lambda name, item: arrays.append((name, item[()]))
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def losses(run_dir: Path) -> list[float]:
    with (run_dir / "history.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_two_workers_train_one_model_and_only_the_chief_exports(toy_corpus, tmp_path):
    workers = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    runs, exports = tmp_path / "runs", tmp_path / "exports"  # shared, as on a volume
    logs = [tmp_path / f"worker-{index}.log" for index in range(2)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "training.run", "translate", "--train-file", str(toy_corpus),
         "--model-name", "toy-mw", *TOY, "--epochs", "2", "--max-train-examples", "640",
         "--run-dir", str(runs),
         "--export-base", str(exports), "--strategy", "multiworker", "--workers", workers,
         "--worker-index", str(index)],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT) for index, log in
        enumerate(logs)]
    try:
        codes = [process.wait(600) for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    chief, other = runs / "toy-mw", runs / "toy-mw" / "worker-1"
    # one model: the same vocabulary, the same figures every epoch, the same weights
    assert (chief / "sentencepiece.model").read_bytes() == (
        other / "sentencepiece.model").read_bytes()
    assert losses(chief) == losses(other)
    assert losses(chief)[-1] < losses(chief)[0]
    mine, theirs = weights(chief / "model.weights.h5"), weights(other / "model.weights.h5")
    assert len(mine) > 10 and [n for n, _ in mine] == [n for n, _ in theirs]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(mine, theirs, strict=True))
    # only the chief exports
    assert [p.name for p in (exports / "toy-mw").iterdir()] == ["1"]
    assert "not the chief" in logs[1].read_text()
    assert "export:" in logs[0].read_text()


def test_a_mirrored_strategy_run_exports_a_model_that_translates(toy_corpus, tmp_path):
    from training.driver import train
    from training.translate import TASK, TranslateConfig

    config = TranslateConfig(
        train_file=str(toy_corpus), model_name="toy-mirrored", vocab_size=40,
        embedding_dim=32, units=64, dropout=0.1, max_source_tokens=16,
        max_target_tokens=20, batch_size=32, epochs=8, learning_rate=5e-3,
        max_eval_examples=40, export_base=str(tmp_path / "exports"),
        run_dir=str(tmp_path / "runs"), strategy="mirrored")
    report = train(TASK, config)
    translate = tf.saved_model.load(str(report.export_path)).signatures["translate"]
    out = translate(
        texts=tf.constant(["one two three"]), beam_width=tf.constant(2),
        num_hypotheses=tf.constant(1), length_penalty=tf.constant(0.6),
        max_length=tf.constant(8), max_length_ratio=tf.constant(2.0))
    assert out["texts"].numpy()[0, 0].decode() == "un deux trois"
