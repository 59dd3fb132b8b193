"""The decode benchmark's counts of operations and bytes read are the model's, and the
benchmark runs on a real export (its speed figures are for humans, not asserted)."""

from __future__ import annotations

import gc
import json

import pytest
import tensorflow as tf

from benchmarks import decode
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID


def matrix_product_flops(graph: tf.Graph) -> int:
    """2 x m x k x n summed over the graph's MatMul and BatchMatMul ops, read off their
    input shapes: an independent count of what `TranslatorShape` derives by hand."""
    total = 0
    for op in graph.get_operations():
        if op.type not in ("MatMul", "BatchMatMulV2"):
            continue
        a, b = (op.inputs[i].shape.as_list() for i in (0, 1))
        adj_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        adj_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
        m, k = (a[-1], a[-2]) if adj_a else (a[-2], a[-1])
        n = b[-2] if adj_b else b[-1]
        batch = 1
        for size in a[:-2]:
            batch *= size
        total += 2 * batch * m * k * n
    return total


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_counted_step_is_the_decode_steps_products_and_reads(cell):
    vocab, embedding, units, beam, source_time = 50, 8, 16, 4, 5
    model = Seq2Seq(vocab, embedding_dim=embedding, units=units, cell=cell, dropout=0.0)
    model((tf.constant([[4, 3]]), tf.constant([[BOS_ID, 4]])))
    state, context = model.start_decoding(tf.constant([[4, 5, 6, 7, 3]]))
    state_specs = [tf.TensorSpec([beam, units]) for _ in state]
    step = tf.function(lambda tokens, state: model.decode_step(tokens, state, context))
    concrete = step.get_concrete_function(tf.TensorSpec([beam], tf.int32), state_specs)

    shape = decode.TranslatorShape(vocab, embedding, units, encoder_layers=1,
                                   gates=decode.GATES[cell])
    assert beam * shape.step_flops(source_time) == matrix_product_flops(concrete.graph)
    # what the step reads, counted off its graph: every weight matrix it captures (of the
    # embedding table only its tokens' rows; biases left out), the attention memory and keys
    matrices = [v for v in concrete.variables if v.shape.rank == 2 and "bias" not in v.name]
    table = model.embedding.embeddings.value
    assert any(v is table for v in matrices)
    weights = sum(v.shape.num_elements() for v in matrices if v is not table)
    memory = sum(t.shape.num_elements() for t in (context.memory_t, context.keys_t))
    read = 4 * (weights + beam * embedding + memory)
    assert shape.step_bytes(1, beam, source_time) == read


@pytest.mark.slow
def test_the_benchmark_reports_speed_against_a_measured_peak(tiny_export, tmp_path, capsys):
    report, _ = tiny_export
    sources = tmp_path / "sources.txt"
    sources.write_text("one two\nthree four five\nsix\nseven eight nine ten\n" * 3)
    output = tmp_path / "decode.json"
    assert decode.main([str(report.export_path), "--batch-sizes", "1", "4", "--sentences", "12",
                        "--source-file", str(sources), "--max-length", "6",
                        "--max-length-ratio", "0", "--output", str(output),
                        "--trace", str(tmp_path / "trace")]) == 0
    printed = capsys.readouterr().out
    assert "matmul peak" in printed and "GFLOP/s" in printed and "GB/s" in printed
    assert "where a step of batch 4 goes" in printed
    assert list((tmp_path / "trace" / "batch-4").glob("plugins/profile/*/*.xplane.pb")), \
        "no trace for TensorBoard"
    figures = json.loads(output.read_text())
    assert figures["options"]["max_length"] == 6
    assert min(figures["matmul_peak_gflops"]) > 0 and min(figures["stream_gbps"]) > 0
    for result in figures["results"]:
        assert result["sentences"] == 12
        assert 1 <= result["decoder_steps_per_batch"] <= 7, "at most max length + EOS"
        assert result["effective_gflops"] > 0 and result["share_of_peak"] > 0
        assert result["read_gbps"] > 0 and result["share_of_stream"] > 0
        by_op = result["ms_per_step_by_op"]  # the trace: the step's products among its ops
        assert any("MatMul" in op for op in by_op) and all(ms >= 0 for ms in by_op.values())


def test_a_benchmark_keeps_its_loaded_export_out_of_garbage_collection(tiny_export):
    """A benchmark's client process loads the export for its in-process figures; a full
    collection scanning it stalled that process for 130-245 ms, inside the latencies it
    measures (the overload's refusals' p99: 30-73 ms instead of 5-7)."""
    report, _ = tiny_export
    gc.unfreeze()
    try:
        decode.load_export(report.export_path)
        assert gc.get_freeze_count() > 10_000, "the export is still scanned by full collections"
    finally:
        gc.unfreeze()
