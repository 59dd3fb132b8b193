"""Translation on the real Bible corpus, in another direction than the default."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from training.driver import train
from training.translate import TASK, TranslateConfig

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def test_language_pair_and_direction_are_flags(tmp_path):
    config = TranslateConfig(
        source="es", target="en", max_train_examples=600, max_eval_examples=20,
        vocab_size=300, embedding_dim=16, units=32, epochs=1, batch_size=64,
        max_source_tokens=32, max_target_tokens=32, export_base=str(tmp_path / "exports"),
        run_dir=str(tmp_path / "runs"))
    report = train(TASK, config)
    assert report.export_path == tmp_path / "exports" / "translate-es-en" / "1"
    meta = json.loads((report.export_path / "recur.json").read_text())
    assert (meta["source_language"], meta["target_language"]) == ("es", "en")
    assert meta["train_pairs"] == 600
    out = tf.saved_model.load(str(report.export_path)).signatures["translate"](
        texts=tf.constant(["En el principio creó Dios los cielos y la tierra."]),
        beam_width=tf.constant(2), num_hypotheses=tf.constant(2),
        length_penalty=tf.constant(0.6), max_length=tf.constant(20),
        max_length_ratio=tf.constant(2.0))
    assert out["texts"].shape == (1, 2)
    assert (out["num_tokens"].numpy() <= 20).all()
