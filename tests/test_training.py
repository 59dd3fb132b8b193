"""The training entry point: its CLI contract, and resuming an interrupted run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import keras
import pytest

from tests.conftest import ROOT
from training.run import build_parser
from training.tasks import TASKS
from training.translate import TASK, TranslateConfig


@pytest.mark.parametrize(("task", "shown"), [
    ("translate", "default: full 8000, quick 4000"),  # per-profile defaults are shown
    ("tag", "default: full 128, quick 64"),
    ("charlm", "default: full 'wavenet', quick 'lstm'"),
    ("caption", "default: full 80, quick 6"),
])
def test_help_lists_every_option_with_its_default(task, shown):
    out = subprocess.run([sys.executable, "-m", "training.run", task, "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for field in dataclasses.fields(TASKS[task].config):
        assert "--" + field.name.replace("_", "-") in text
    assert "--profile {full,quick}" in text
    assert shown in text


def test_flags_beat_profiles_which_beat_field_defaults():
    from model.config import config_from_args

    args = build_parser().parse_args(["translate", "--profile", "quick", "--epochs", "7"])
    config = config_from_args(TranslateConfig, args, TASK.profiles)
    assert config.epochs == 7
    assert config.units == TASK.profiles["quick"]["units"]
    assert config.clip_norm == TranslateConfig.clip_norm


def test_an_unknown_task_fails_and_lists_the_tasks():
    out = subprocess.run([sys.executable, "-m", "training.run", "no-such-task"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "invalid choice: 'no-such-task'" in out.stderr and "translate" in out.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["charlm", "--cosine-decay", "--decay-factor", "0.5"], "--cosine-decay and --decay-factor"),
    (["caption", "--dev-file", "dev.tsv"], "--dev-file goes with --train-file"),
    (["caption", "--image-dir", "images"], "--image-dir goes with --train-file"),
    (["caption", "--eval-styles", "google", "--train-file", "c.tsv"],
     "--eval-styles measures the emoji test split"),
    (["caption", "--eval-styles", "google,twitter"],
     "twitter is not another emoji style; choose among apple, facebook, google"),
])
def test_flags_that_contradict_each_other_are_a_usage_error(capsys, argv, message):
    from training.run import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


class Crash(keras.callbacks.Callback):
    """Simulates a run killed after its first epoch (after Keras' backup was written)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, toy_corpus):
    from training.driver import train

    config = TranslateConfig(
        train_file=str(toy_corpus), model_name="resume", vocab_size=40, embedding_dim=16,
        units=16, dropout=0.0, max_source_tokens=16, max_target_tokens=20, batch_size=64,
        epochs=2, patience=0, max_train_examples=512, max_eval_examples=4,
        export_base=str(tmp_path / "exports"),
        run_dir=str(tmp_path / "runs"))
    with pytest.raises(KeyboardInterrupt):
        train(TASK, config, extra_callbacks=(Crash(),))
    assert (tmp_path / "runs" / "resume" / "sentencepiece.model").exists()
    assert not (tmp_path / "exports" / "resume").exists() or not list(
        (tmp_path / "exports" / "resume").iterdir()), "a crashed run must not export"
    report = train(TASK, config)
    assert report.epochs_run == [1], "the second run must start at the second epoch"
    assert report.export_path.name == "1"


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["jit_compile", "mixed_precision"])
def test_gpu_oriented_flags_train_and_export_on_cpu(tmp_path, toy_corpus, flag):
    import json

    import tensorflow as tf

    from training.driver import train

    config = TranslateConfig(
        train_file=str(toy_corpus), model_name=flag, vocab_size=40, embedding_dim=16,
        units=16, max_source_tokens=16, max_target_tokens=20, batch_size=64, epochs=1,
        # few batches: XLA compiles the training step once per batch shape
        max_train_examples=256, max_eval_examples=8,
        export_base=str(tmp_path / "exports"), run_dir=str(tmp_path / "runs"), **{flag: True})
    report = train(TASK, config)
    assert keras.mixed_precision.global_policy().name == "float32", "policy restored"
    assert json.loads((report.export_path / "recur.json").read_text())["config"][flag]
    out = tf.saved_model.load(str(report.export_path)).signatures["translate"](
        texts=tf.constant(["one two"]), beam_width=tf.constant(2), num_hypotheses=tf.constant(1),
        length_penalty=tf.constant(0.6), max_length=tf.constant(8),
        max_length_ratio=tf.constant(2.0))
    assert out["scores"].dtype == tf.float32 and bool(tf.reduce_all(tf.math.is_finite(
        out["scores"])))


@pytest.mark.slow
def test_the_history_counts_the_target_tokens_each_epoch_trained_on(tmp_path, toy_corpus):
    import csv

    import numpy as np

    from training.driver import train

    config = TranslateConfig(
        train_file=str(toy_corpus), model_name="tokens", vocab_size=40, embedding_dim=8,
        units=16, max_source_tokens=16, max_target_tokens=20, batch_size=64, epochs=2,
        max_train_examples=512, max_eval_examples=4, export_base=str(tmp_path / "exports"),
        run_dir=str(tmp_path / "runs"))
    train(TASK, config)
    with open(tmp_path / "runs" / "tokens" / "history.csv") as file:
        rows = list(csv.DictReader(file))
    # The same pipeline, seed and run directory give the same first pass again.
    data = TASK.prepare(config, tmp_path / "runs" / "tokens")
    targets = sum(int(np.count_nonzero(target)) for _, target in
                  data.train.dataset.take(data.train.steps).as_numpy_iterator())
    assert float(rows[0]["tokens"]) == targets, "target subwords, padding excluded"
    assert all(float(row["tokens_per_second"]) > 0 for row in rows)


def test_weighted_positions_count_as_tokens_whatever_their_target_id():
    from training.progress import TokenCount

    count = TokenCount()  # a tagger's tag id 0 is a real tag; its weights mark padding
    count.update_state(keras.ops.convert_to_tensor([[0, 3, 0], [2, 0, 0]]), None,
                       keras.ops.convert_to_tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    assert float(count.result()) == 4
    count.update_state(keras.ops.convert_to_tensor([[5, 0]]), None)  # unweighted: 0 pads
    assert float(count.result()) == 5
