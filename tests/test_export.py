"""The exported translator: layout, signature, and equality with in-process decoding."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model.contract import TRANSLATE, XLA_BUCKET
from model.export import METADATA_FILE, staged_export, versions
from model.seq2seq import Seq2Seq
from model.tokenizer import SubwordTokenizer, TokenizerConfig, train_sentencepiece
from model.translator import Translator
from tests.conftest import ROOT, toy_pairs

pytestmark = pytest.mark.slow

SOURCES = ["one two", "three", "seven eight nine ten", "five five five five"]


def call_signature(signature, beam=4, n=3, alpha=0.6, max_length=12, ratio=2.0):
    return signature(texts=tf.constant(SOURCES), beam_width=tf.constant(beam),
                     num_hypotheses=tf.constant(n), length_penalty=tf.constant(alpha),
                     max_length=tf.constant(max_length), max_length_ratio=tf.constant(ratio))


def test_export_layout_and_metadata(tiny_export):
    report, base = tiny_export
    assert report.export_path == base / "toy-en-fr" / "1"
    assert (report.export_path / "saved_model.pb").is_file()
    meta = json.loads((report.export_path / METADATA_FILE).read_text())
    assert meta["task"] == "translate" and meta["signature"] == "translate"
    expected = {f"{split}_{metric}_{decoder}" for split in ("dev", "test")
                for metric in ("bleu", "chrf") for decoder in ("greedy", "beam4")}
    assert expected == set(meta["metrics"])
    assert meta["metrics"]["test_bleu_beam4"] > 90, "the toy task is learnable"
    assert not [p for p in (base / "toy-en-fr").iterdir() if p.name.startswith(".staging")]


def test_advance_steps_on_past_an_ended_input_which_gets_its_answer_alone(tiny_export):
    """The step scheduler's `advance` takes its steps whatever ends on the way (one call
    for many steps, not one per ended input): an input that ended is carried along
    frozen and gets what the request-level signature gives it alone, with the step it
    ended on."""
    report, _ = tiny_export
    loaded = tf.saved_model.load(str(report.export_path))
    texts = ["one", "two three four five six seven"]  # a short and a long translation
    options = {"beam_width": 3, "length_penalty": 0.6, "max_length": 20,
               "max_length_ratio": 0.0}
    alone = [TRANSLATE.signature.call(loaded.signatures["translate"],
                                      [{"texts": text, "num_hypotheses": 3, **options}])
             for text in texts]
    steps = [int(answer["decode_steps"]) for answer in alone]
    assert steps[0] < steps[1], "the check needs one input to end before the other"

    beams, _ = loaded.begin(**TRANSLATE.begin.arguments([{"texts": t, **options}
                                                        for t in texts]))
    _, out = loaded.advance(beams, tf.constant(50))
    assert out["ended"].numpy().tolist() == [True, True]
    assert int(out["steps"]) == steps[1]
    assert out["decode_steps"].numpy().tolist() == steps
    for row, answer in enumerate(alone):
        assert out["texts"].numpy()[row].tolist() == answer["texts"][0].tolist()
        np.testing.assert_allclose(out["scores"].numpy()[row], answer["scores"][0], atol=1e-5)


def test_the_step_decoders_warm_up_leaves_nothing_behind(tiny_export):
    """The server warms every compiled function of the step decoder at load: that leaves
    no input in the decode and no sample in the metrics, and the first real input is
    answered as the signature answers it."""
    from prometheus_client import REGISTRY

    from serving.step_decoder import StepDecoder

    report, _ = tiny_export
    loaded = tf.saved_model.load(str(report.export_path))
    row = {"texts": "seven eight nine", "beam_width": 3, "length_penalty": 0.6,
           "max_length": 20, "max_length_ratio": 0.0}
    decoder = StepDecoder("warm-up-test", loaded, TRANSLATE.begin)
    decoder.warm_up([row, {**row, "texts": "one"}])
    assert decoder.rows == 0
    assert REGISTRY.get_sample_value("recur_batch_size_count", {"model": "warm-up-test"}) in (
        None, 0.0)

    decoder.join(decoder.start([("first", [row])]))
    finished = []
    while decoder.rows:
        finished += decoder.step()[0]
    alone = TRANSLATE.signature.call(loaded.signatures["translate"],
                                     [{**row, "num_hypotheses": 3}])
    (ticket, _, outputs), = finished
    assert ticket == "first"
    assert outputs["texts"].tolist() == alone["texts"][0].tolist()
    decoder.close()


def test_an_input_that_leaves_as_it_joins_leaves_the_running_decode(tiny_export):
    """The batcher joins a started input and drops it at once when its client left while
    it started. Whether the running decode takes its group before or after the leave,
    the input leaves the decode: the other input decodes alone (one row at each piece
    of news), not beside a row nobody waits for."""
    from prometheus_client import REGISTRY

    from serving.step_decoder import StepDecoder

    report, _ = tiny_export
    loaded = tf.saved_model.load(str(report.export_path))
    row = {"texts": "seven eight nine", "beam_width": 3, "length_penalty": 0.6,
           "max_length": 20, "max_length_ratio": 0.0}
    decoder = StepDecoder("leave-test", loaded, TRANSLATE.begin)
    try:
        for _ in range(4):
            decoder.join(decoder.start([("stays", [row])]))
            decoder.join(decoder.start([("leaves", [row])]))
            decoder.leave({"leaves"})
            finished = []
            while decoder.rows:
                finished += decoder.step()[0]
            assert [ticket for ticket, *_ in finished] == ["stays"]
    finally:
        decoder.close()
    rows = REGISTRY.get_sample_value("recur_batch_size_sum", {"model": "leave-test"})
    news = REGISTRY.get_sample_value("recur_batch_size_count", {"model": "leave-test"})
    assert news >= 4 and rows == news, "a left input went on decoding"


def test_reloaded_savedmodel_matches_the_keras_model(tmp_path):
    """Decoding in-process with the Keras model and through the reloaded export agree."""
    texts = [t for pair in toy_pairs(100) for t in pair]
    tokenizer = SubwordTokenizer(train_sentencepiece(texts, TokenizerConfig(vocab_size=40)))
    model = Seq2Seq(tokenizer.vocab_size, embedding_dim=8, units=16, dropout=0.2)
    model((tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32)))
    translator = Translator(model, tokenizer, max_source_tokens=16)
    in_process = call_signature(translator.translate)
    translator.save(tmp_path)
    exported = call_signature(tf.saved_model.load(str(tmp_path)).signatures["translate"])
    for key in ("texts", "num_tokens"):
        np.testing.assert_array_equal(exported[key].numpy(), in_process[key].numpy())
    for key in ("scores", "log_probs"):
        np.testing.assert_allclose(exported[key].numpy(), in_process[key].numpy(), atol=1e-5)
    assert exported["texts"].shape == (len(SOURCES), 3)
    scores = exported["scores"].numpy()
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "n-best must be sorted best first"


def test_saved_model_cli_describes_the_signature(tiny_export):
    report, _ = tiny_export
    cli = [sys.executable, "-c", "from tensorflow.python.tools.saved_model_cli import main; "
           "import sys; sys.exit(main())"]
    out = subprocess.run([*cli, "show", "--dir", str(report.export_path), "--all"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("signature_def['translate']", "texts", "beam_width", "num_hypotheses",
                 "length_penalty", "max_length", "scores", "log_probs", "num_tokens"):
        assert name in out.stdout


def test_failed_export_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_export(tmp_path, "broken") as staged:
        (staged.path / "half-written").write_text("x")
        raise RuntimeError("training crashed mid-export")
    assert versions(tmp_path / "broken") == []
    assert list((tmp_path / "broken").iterdir()) == []


def saved_graph(path: Path):
    """A SavedModel's GraphDef: its graph and its function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    return saved.meta_graphs[0].graph_def


def saved_op_types(path: Path) -> set[str]:
    """Every op type in a SavedModel's graph and function library."""
    graph = saved_graph(path)
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.mark.parametrize("xla", [False, True])
def test_export_from_a_gpu_contains_no_cudnn_only_op(tmp_path, monkeypatch, xla):
    """On a GPU, Keras RNN layers trace CudnnRNNV3 (no CPU kernel). There is no GPU here,
    so make Keras believe there is one: the export must still use portable kernels, also
    in the functions it compiles with XLA."""
    keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    monkeypatch.setattr(keras_tf_rnn, "_is_gpu_available", lambda: True)
    texts = [t for pair in toy_pairs(100) for t in pair]
    tokenizer = SubwordTokenizer(train_sentencepiece(texts, TokenizerConfig(vocab_size=40)))
    model = Seq2Seq(tokenizer.vocab_size, embedding_dim=8, units=16, dropout=0.0)
    source = tf.constant([[5, 6, 3]])
    model((source, tf.constant([[2, 5]])))

    # Without the export's guard the GPU kernel is what gets traced: the check can fail.
    graph = tf.function(model.encode).get_concrete_function(source).graph
    assert any(op.type.startswith("Cudnn") for op in graph.get_operations())

    Translator(model, tokenizer, max_source_tokens=16, xla=xla).save(tmp_path)
    ops = saved_op_types(tmp_path)
    assert not {op for op in ops if op.startswith("Cudnn")}
    assert "SentencepieceOp" in ops or any("Sentencepiece" in op for op in ops)
    monkeypatch.undo()
    out = call_signature(tf.saved_model.load(str(tmp_path)).signatures["translate"])
    assert out["texts"].shape == (len(SOURCES), 3)  # runs on this CPU-only machine


def test_an_xla_export_compiles_its_search_and_answers_as_the_plain_one(tmp_path):
    """`xla=True` saves the encoder and the search loop for XLA, padding source and
    output buffer to buckets: the same n-best from the signature and from begin /
    advance, for sources on both sides of a bucket's edge."""
    texts = [t for pair in toy_pairs(100) for t in pair]
    tokenizer = SubwordTokenizer(train_sentencepiece(texts, TokenizerConfig(vocab_size=40)))
    model = Seq2Seq(tokenizer.vocab_size, embedding_dim=8, units=16, dropout=0.0)
    model((tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32)))
    sources = [*SOURCES, " ".join(["three four"] * 12)]  # past 16 source tokens
    answers, time_axes = {}, {}
    for xla in (False, True):
        path = tmp_path / str(xla)
        Translator(model, tokenizer, max_source_tokens=32, xla=xla).save(path)
        loaded = tf.saved_model.load(str(path))
        rows = [{"texts": t, "beam_width": 3, "length_penalty": 0.6, "max_length": 20,
                 "max_length_ratio": 0.0} for t in sources]
        whole = TRANSLATE.signature.call(loaded.signatures["translate"],
                                         [{**row, "num_hypotheses": 3} for row in rows])
        beams, _ = loaded.begin(**TRANSLATE.begin.arguments(rows))
        after, stepped = loaded.advance(beams, tf.constant(30))
        answers[xla] = whole, {k: v.numpy() for k, v in stepped.items()}
        assert compiled_functions(path) == ({"start_decoding", "_run"} if xla else set())
        # [source positions of the attention mask, output buffer steps]
        time_axes[xla] = np.array([beams.context.mask.shape[1], after.tokens.shape[2]])

    # Only XLA pads them, to the next bucket (neither is a multiple of one already).
    assert all(time_axes[False] % XLA_BUCKET)
    np.testing.assert_array_equal(time_axes[True], -(-time_axes[False] // XLA_BUCKET) * XLA_BUCKET)

    (plain, plain_stepped), (compiled, compiled_stepped) = answers[False], answers[True]
    np.testing.assert_array_equal(compiled["texts"], plain["texts"])
    np.testing.assert_allclose(compiled["scores"], plain["scores"], atol=1e-5)
    np.testing.assert_array_equal(compiled_stepped["texts"], plain_stepped["texts"])
    np.testing.assert_array_equal(compiled_stepped["texts"][:, :3], plain["texts"])
    np.testing.assert_allclose(compiled_stepped["scores"], plain_stepped["scores"], atol=1e-5)


def compiled_functions(path: Path) -> set[str]:
    """The Python names of the SavedModel's functions marked for XLA compilation."""
    library = saved_graph(path).library.function
    return {re.fullmatch(r"__inference_(.+)_\d+", function.signature.name).group(1)
            for function in library if function.attr["_XlaMustCompile"].b}



def test_a_bf16_projection_export_decodes_in_bfloat16_and_answers_as_the_float32_one(
        tiny_export, tmp_path):
    """The tiny model exported again with --bf16-projection (`training.run` with --epochs
    0): the export multiplies by a bfloat16 copy of the projection in the signature and
    in `advance`, says so in recur.json, and gives the float32 export's n-best texts on
    this model, whose choices are clear, with scores within bfloat16's rounding."""
    from training.driver import train
    from training.translate import TASK, TranslateConfig

    report, _ = tiny_export
    config = json.loads((report.export_path / METADATA_FILE).read_text())["config"]
    run = shutil.copytree(Path(config["run_dir"]) / config["model_name"],
                          tmp_path / "runs" / config["model_name"])
    bf16_report = train(TASK, TranslateConfig(**{
        **config, "bf16_projection": True, "epochs": 0, "max_eval_examples": 4,
        "run_dir": str(tmp_path / "runs"),
        "init_weights": str(run / "model.weights.h5"),
        "export_base": str(tmp_path / "exports")}))
    rows = [{"texts": t, "beam_width": 3, "length_penalty": 0.6, "max_length": 12,
             "max_length_ratio": 0.0} for t in SOURCES]
    answers = {}
    for bf16, path in ((False, report.export_path), (True, bf16_report.export_path)):
        assert json.loads((path / METADATA_FILE).read_text())["bf16_projection"] == bf16
        assert bf16 == any(node.op == "MatMul" and node.attr["T"].type == tf.bfloat16
                           for function in saved_graph(path).library.function
                           for node in function.node_def)
        loaded = tf.saved_model.load(str(path))
        whole = TRANSLATE.signature.call(loaded.signatures["translate"],
                                         [{**row, "num_hypotheses": 3} for row in rows])
        _, stepped = loaded.advance(loaded.begin(**TRANSLATE.begin.arguments(rows))[0],
                                    tf.constant(30))
        answers[bf16] = whole, {k: v.numpy() for k, v in stepped.items()}

    (plain, plain_stepped), (bf16, bf16_stepped) = answers[False], answers[True]
    np.testing.assert_array_equal(bf16["texts"], plain["texts"])
    np.testing.assert_array_equal(bf16_stepped["texts"], plain_stepped["texts"])
    for key in ("scores", "log_probs"):
        np.testing.assert_allclose(bf16[key], plain[key], rtol=0.02, atol=0.02)
        assert not np.array_equal(bf16[key], plain[key])  # another product
