"""The export contract (model/contract.py) is enough to write an export by hand: one
written here from its documentation alone, without recur's exporters, is served."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from model.contract import TRANSLATE, ContractError, check_version
from serving.client import RecurClient
from serving.process import ServerProcess

# Spelled out from the documentation, not imported: this is what a hand-writer types.
SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="texts"),
    tf.TensorSpec([], tf.int32, name="beam_width"),
    tf.TensorSpec([], tf.int32, name="num_hypotheses"),
    tf.TensorSpec([], tf.float32, name="length_penalty"),
    tf.TensorSpec([], tf.int32, name="max_length"),
    tf.TensorSpec([], tf.float32, name="max_length_ratio"),
]


class Shouter(tf.Module):
    """A "translator" into capitals: n identical hypotheses per text."""

    @tf.function(input_signature=SIGNATURE)
    def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length,
                  max_length_ratio):
        batch = tf.shape(texts)[0]
        shape = tf.stack([batch, num_hypotheses])
        words = tf.strings.split(texts).row_lengths()
        return {"texts": tf.tile(tf.strings.upper(texts)[:, None], [1, num_hypotheses]),
                "scores": tf.zeros(shape), "log_probs": tf.zeros(shape),
                "num_tokens": tf.tile(tf.cast(words, tf.int32)[:, None], [1, num_hypotheses]),
                "source_tokens": tf.cast(words, tf.int32), "decode_steps": tf.constant(1)}


def write_export(path, module, metadata: dict) -> None:
    fn = module.translate.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures={"translate": fn, "serving_default": fn})
    (path / "recur.json").write_text(json.dumps(metadata))


def test_versions_this_release_reads():
    assert check_version({"task": "translate"}) == 1, "written before the key existed"
    assert check_version({"task": "translate", "contract_version": 1}) == 1
    with pytest.raises(ContractError, match="contract_version 2"):
        check_version({"task": "translate", "contract_version": 2})


def test_the_contract_names_what_an_export_lacks(tmp_path):
    module = Shouter()
    write_export(tmp_path / "good", module, {})
    TRANSLATE.check(tf.saved_model.load(str(tmp_path / "good")))

    class NoRatio(tf.Module):
        @tf.function(input_signature=SIGNATURE[:-1])
        def translate(self, texts, beam_width, num_hypotheses, length_penalty, max_length):
            return module.translate(texts, beam_width, num_hypotheses, length_penalty,
                                    max_length, tf.constant(0.0))

    write_export(tmp_path / "bad", NoRatio(), {})
    with pytest.raises(ContractError, match="no input 'max_length_ratio'"):
        TRANSLATE.check(tf.saved_model.load(str(tmp_path / "bad")))


@pytest.mark.slow
def test_an_export_written_by_hand_is_served(tmp_path):
    base = tmp_path / "exports"
    write_export(base / "shouter" / "1", Shouter(), {"task": "translate",
                                                      "contract_version": 1})
    server = ServerProcess(base, "--poll-seconds", "0")
    server.wait_until_serving()
    try:
        with RecurClient(server.target) as client:
            response = client.translate(["in the beginning", "jesus wept"], "shouter",
                                        beam_width=2, num_hypotheses=2)
        assert [[h.text for h in r.hypotheses] for r in response.results] == [
            ["IN THE BEGINNING"] * 2, ["JESUS WEPT"] * 2]
        assert [r.hypotheses[0].num_tokens for r in response.results] == [3, 2]
    finally:
        assert server.stop() == 0
    log = server.log_path.read_text()
    assert "no step functions (begin/advance): it is served with request scheduling" in log
