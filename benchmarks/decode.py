"""Offline decoding throughput of a translation export, called in-process, and the
share of this machine's matrix-product speed and memory bandwidth it uses.

    python -m benchmarks.decode exports/translate-en-fr/1 --batch-sizes 1 64

Translates real held-out sentences (the Bible test books, or --source-file) in
batches through the SavedModel's `translate` signature, after a first pass over the
same batches that the figures leave out (it also compiles every shape an XLA export
meets; its time is printed apart), and prints per batch size: sentences/s, target
tokens/s (tokens of the best
hypothesis, EOS excluded, as CTranslate2's tables count them), the decoder steps
run, and the effective GFLOP/s of the decode's matrix products. Those are counted
from the model's shapes (the export's `recur.json`) and the work actually run: the
encoder over every source position up to the batch's longest source (an XLA export's
padding past it to its bucket is not counted), and at every step of the in-graph loop
the cell, attention and output projection for every hypothesis (the loop steps
all rows of a batch until its last one ends). Beside it, a matmul peak measured in
the same run: one TensorFlow [rows x units] x [units x vocab] product, the decode's
largest. Small batches are bound by memory instead: a step reads every weight it
multiplies by, however few hypotheses share them (the projection to the vocabulary
alone is 16 MB at 512 x 8000). So it also prints the GB/s of the decode's reads,
counted the same way (every weight matrix of the encoder's steps and of each decoder
step, the tokens' embedding rows, and each input's attention memory and keys), against
a streaming rate measured in the same run: the GB/s at which the largest product reads
its weights at one sentence's rows ([beam x units] x [units x vocab]).
`--max-length 40 --max-length-ratio 0` caps every output at 40 tokens, so runs of
different code on one export compare the same work (an export trained briefly, or not
at all, seldom ends before its cap). --output writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model.startup import import_tensorflow, settle_heap, warm_up

import_tensorflow(initialize=False)  # quietly, before anything else imports it; the
# runtime starts in `start_tensorflow`, once the thread flags are known

import tensorflow as tf  # noqa: E402

from benchmarks.op_profile import op_times  # noqa: E402
from model.contract import (  # noqa: E402
    DECODE_STEPS,
    MAX_LENGTH,
    MAX_LENGTH_RATIO,
    SOURCE_TOKENS,
    TEXTS,
    TRANSLATE,
    Meta,
)
from model.export import read_metadata  # noqa: E402
from training.corpora import load_bible_pairs  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per recurrent cell
PEAK_ROWS = 256  # hypotheses of the peak's product: batch 64 at beam 4
FLOAT32 = 4  # bytes


def add_thread_arguments(parser: argparse.ArgumentParser) -> None:
    """TensorFlow's thread pools, as `python -m serving` takes them (its --help)."""
    for pool in ("intra", "inter"):
        parser.add_argument(f"--{pool}-op-threads", type=int, default=0,
                            help=f"TensorFlow {pool}-op threads of the in-process figures "
                                 "(and of the server, where there is one), as `python -m "
                                 "serving` takes them (default: %(default)s = one per core)")


def thread_settings(args: argparse.Namespace) -> dict[str, int]:
    """The thread flags, for a benchmark's JSON."""
    return {"intra_op_threads": args.intra_op_threads, "inter_op_threads": args.inter_op_threads}


def start_tensorflow(args: argparse.Namespace) -> list[str]:
    """Starts this process's TensorFlow with the thread flags; returns them for a server,
    so that in-process and served figures run on the same pools."""
    warm_up(args.intra_op_threads, args.inter_op_threads)
    return ["--intra-op-threads", str(args.intra_op_threads),
            "--inter-op-threads", str(args.inter_op_threads)]


@dataclass(frozen=True)
class TranslatorShape:
    """The translator's matrix products (`model/seq2seq.py`), counted from its
    hyperparameters; a multiply-add counts as two operations."""

    vocab: int
    embedding: int
    units: int  # decoder; each encoder direction has half
    encoder_layers: int
    gates: int
    projection_bytes: int = FLOAT32  # per weight of the output projection (bfloat16: 2)

    @classmethod
    def of(cls, metadata: Mapping) -> TranslatorShape | None:
        """From `recur.json` as `training.run` writes it; None for an export without its
        training config (written by other code)."""
        config = metadata.get("config", {})
        try:
            return cls(int(metadata["vocab_size"]), int(config["embedding_dim"]),
                       int(config["units"]), int(config["encoder_layers"]),
                       GATES[config["cell"]],
                       2 if metadata.get(Meta.BF16_PROJECTION) else FLOAT32)
        except KeyError:
            return None

    def _encoder_kernels(self) -> int:
        """Weights of one step of every bidirectional layer (both directions)."""
        half, inputs, weights = self.units // 2, self.embedding, 0
        for _ in range(self.encoder_layers):
            weights += 2 * (inputs + half) * self.gates * half
            inputs = self.units
        return weights

    def encoder_flops(self, positions: int) -> int:
        """Every bidirectional layer and the attention keys over `positions` source
        positions (batch x padded source time)."""
        return (2 * self._encoder_kernels() + 2 * self.units * self.units) * positions

    def encoder_bytes(self, batch: int, source_time: int) -> int:
        """Bytes the encoder reads at least: its kernels at every one of its `source_time`
        steps (a step multiplies by them whatever the batch), the embedding rows, and the
        attention keys' kernel once."""
        return FLOAT32 * (self._encoder_kernels() * source_time + self.units * self.units
                          + batch * source_time * self.embedding)

    def step_flops(self, source_time: int) -> int:
        """One decoder step of one hypothesis attending over `source_time` positions: the
        cell, attention scores and context, the attention's output layer, the projection
        to the vocabulary."""
        u = self.units
        return 2 * ((self.embedding + u) * self.gates * u + 2 * source_time * u + 2 * u * u
                    + u * self.vocab)

    def step_bytes(self, inputs: int, hypotheses: int, source_time: int) -> int:
        """Bytes one decoder step of `hypotheses` over `inputs` reads at least: the weight
        matrices of its products (once, however many hypotheses share them), the
        hypotheses' embedding rows, and every input's attention memory and keys."""
        u = self.units
        return (FLOAT32 * ((self.embedding + u) * self.gates * u + 2 * u * u
                           + hypotheses * self.embedding + 2 * inputs * source_time * u)
                + self.projection_bytes * u * self.vocab)


def translate(signature, sources: list[str], options: Mapping) -> dict:
    """Translates a batch exactly as the server does; returns the signature's outputs."""
    return TRANSLATE.signature.call(signature, [{**options, TEXTS.name: s} for s in sources])


def batch_work(shape: TranslatorShape, out: Mapping, beam_width: int) -> tuple[int, int]:
    """The matrix-product operations and the bytes read of one `translate` call, from its
    outputs."""
    batch, source_time = len(out[SOURCE_TOKENS]), int(max(out[SOURCE_TOKENS]))
    steps, hypotheses = int(out[DECODE_STEPS]), batch * beam_width
    return (shape.encoder_flops(batch * source_time)
            + steps * hypotheses * shape.step_flops(source_time),
            shape.encoder_bytes(batch, source_time)
            + steps * shape.step_bytes(batch, hypotheses, source_time))


@dataclass(frozen=True)
class MachineSpeed:
    """This machine at the decode's largest product, measured in the run: float32 GFLOP/s
    at batch 64's rows (bound by arithmetic) and the GB/s at which its weights are read at
    one sentence's rows (bound by memory)."""

    peak_gflops: float
    stream_gbps: float

    @classmethod
    def measure(cls, shape: TranslatorShape, beam_width: int) -> MachineSpeed:
        weights = shape.units * shape.vocab
        return cls(2 * PEAK_ROWS * weights / _best_product(PEAK_ROWS, shape) / 1e9,
                   FLOAT32 * weights / _best_product(beam_width, shape) / 1e9)

    def __str__(self) -> str:
        return (f"{self.peak_gflops:.1f} GFLOP/s (matmul peak, {PEAK_ROWS} rows), "
                f"{self.stream_gbps:.1f} GB/s (weights streamed at a sentence's rows)")


def _best_product(rows: int, shape: TranslatorShape, seconds: float = 2.0,
                  repeats: int = 8) -> float:
    """Seconds of a [rows x units] x [units x vocab] float32 product: the best of calls of
    `repeats` products in a graph loop, one at a time as a decode runs them (at a
    sentence's rows a product takes well under a millisecond, and a call's own cost would
    count)."""
    a = tf.random.normal([repeats, rows, shape.units])
    b = tf.random.normal([shape.units, shape.vocab])

    @tf.function
    def products() -> tf.Tensor:
        return tf.while_loop(lambda i, _: i < repeats,
                             lambda i, total: (i + 1, total + tf.matmul(a[i], b)[0, 0]),
                             (tf.constant(0), tf.constant(0.0)),
                             parallel_iterations=1)[1]  # one value back

    for _ in range(3):
        products()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        products().numpy()
        best = min(best, time.perf_counter() - started)
    return best / repeats


def measure(signature, sources: list[str], batch_size: int, options: Mapping,
            shape: TranslatorShape | None = None) -> dict:
    """Decodes `sources` in batches of `batch_size` twice: a first pass, which also pays
    for every compilation (TensorFlow's per function, XLA's per shape), then the measured
    one. With the model's `shape`, also its effective GFLOP/s and GB/s of reads."""
    started = time.perf_counter()
    for start in range(0, len(sources), batch_size):
        translate(signature, sources[start:start + batch_size], options)
    first_pass = time.perf_counter() - started
    latencies, tokens, flops, reads, steps = [], 0, 0, 0, 0
    started = time.perf_counter()
    for start in range(0, len(sources), batch_size):
        batch_started = time.perf_counter()
        out = translate(signature, sources[start:start + batch_size], options)
        latencies.append(time.perf_counter() - batch_started)
        tokens += int(out["num_tokens"][:, 0].sum())
        steps += int(out[DECODE_STEPS])
        if shape is not None:
            work = batch_work(shape, out, options["beam_width"])
            flops, reads = flops + work[0], reads + work[1]
    seconds = time.perf_counter() - started
    result = {
        "batch_size": batch_size,
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "first_pass_seconds": round(first_pass, 3),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "target_tokens_per_second": round(tokens / seconds, 1),
        "batch_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "decoder_steps_per_batch": round(steps / len(latencies), 1),
        "ms_per_step": round(seconds / steps * 1000, 2),
    }
    if shape is not None:
        result["effective_gflops"] = round(flops / seconds / 1e9, 2)
        result["read_gbps"] = round(reads / seconds / 1e9, 2)
    return result


def traced_step(signature, sources: list[str], options: Mapping, logdir: Path,
                shown: int = 12) -> dict[str, float]:
    """Decodes one batch under the profiler; prints and returns the milliseconds per
    decoder step of each op type (the encoder's share included), largest first."""
    out = {}
    seconds = op_times(lambda: out.update(translate(signature, sources, options)), logdir)
    steps = int(out[DECODE_STEPS])
    per_step = {op: round(s * 1000 / steps, 4) for op, s in seconds.most_common()}
    total = sum(per_step.values())
    print(f"  where a step of batch {len(sources)} goes ({total:.2f} ms of op time a step, "
          f"trace in {logdir}):")
    for op, ms in list(per_step.items())[:shown]:
        print(f"    {op:28s} {ms:8.3f} ms  {ms / total:6.1%}")
    return per_step


def decode_options(metadata: Mapping, beam_width: int, length_penalty: float,
                   max_length: int = 0, max_length_ratio: float = -1.0) -> dict:
    """The options a server gives a request that sets these (0 and -1: the export's
    defaults)."""
    return {"beam_width": beam_width, "num_hypotheses": 1, "length_penalty": length_penalty,
            MAX_LENGTH.name: max_length or int(metadata.get(MAX_LENGTH.name, 512)),
            MAX_LENGTH_RATIO.name: (max_length_ratio if max_length_ratio >= 0
                                    else float(metadata.get(MAX_LENGTH_RATIO.name, 2.0)))}


def load_export(path: str | Path):
    """The SavedModel at `path`, loaded as the server loads it: its objects then kept
    out of garbage collection (`settle_heap`), so that no full pass of the collector
    stalls this process for a few hundred ms in the middle of a measurement."""
    loaded = tf.saved_model.load(str(path))
    settle_heap()
    return loaded


def load_signature(export: str):
    metadata = read_metadata(Path(export))
    name = metadata.get(Meta.SIGNATURE, TRANSLATE.signature.name)
    return load_export(export).signatures[name], metadata


def load_sources(source_file: str, language: str, count: int) -> list[str]:
    if source_file:
        lines = [line.strip() for line in Path(source_file).read_text().splitlines()]
        sources = [line for line in lines if line]
    else:
        sources = [s for s, _ in load_bible_pairs(language, "fr" if language != "fr" else "en")
                   .test]
    return sources[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="a version directory, e.g. exports/translate-en-fr/1")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64],
                        help="batch sizes to measure (default: %(default)s)")
    parser.add_argument("--sentences", type=int, default=256,
                        help="sentences decoded per batch size (default: %(default)s)")
    parser.add_argument("--beam-width", type=int, default=4,
                        help="beam width of every sentence (default: %(default)s)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="GNMT length penalty of the search (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=0,
                        help="output tokens allowed per sentence (default: 0, the export's "
                             "own limit)")
    parser.add_argument("--max-length-ratio", type=float, default=-1.0,
                        help="outputs end by ratio x source tokens + 10; 0 = no relative "
                             "limit (default: -1, the export's own ratio)")
    parser.add_argument("--source-file", default="",
                        help="one source sentence per line (default: the export's source "
                             "language from the Bible test books)")
    parser.add_argument("--output", default="", help="also write the figures as JSON here")
    parser.add_argument("--trace", default="",
                        help="after each batch size, trace one batch with TensorFlow's "
                             "profiler into TRACE/batch-N (open with TensorBoard) and print "
                             "where a decoder step's time goes by op type; best with "
                             "--inter-op-threads 1, whose op times add up (default: off)")
    add_thread_arguments(parser)
    args = parser.parse_args(argv)
    start_tensorflow(args)
    logging.basicConfig(level=logging.WARNING)

    signature, metadata = load_signature(args.export)
    sources = load_sources(args.source_file, metadata.get("source_language", "en"),
                           args.sentences)
    options = decode_options(metadata, args.beam_width, args.length_penalty, args.max_length,
                             args.max_length_ratio)
    shape = TranslatorShape.of(metadata)
    print(f"{args.export}: {len(sources)} sentences, beam {args.beam_width}, "
          f"max length {options[MAX_LENGTH.name]} (ratio {options[MAX_LENGTH_RATIO.name]}), "
          f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}\n"
          f"model: {shape or 'no training config in recur.json: GFLOP/s not counted'}")
    exported = {key: bool(metadata.get(key)) for key in (Meta.XLA, Meta.BF16_PROJECTION)}
    print("export: " + ", ".join(f"{key} {value}" for key, value in exported.items())
          + (" (the peak below is float32's: the share counts what the same products "
             "would cost in float32)" if exported[Meta.BF16_PROJECTION] else ""))
    speeds: list[MachineSpeed] = []
    if shape is not None:
        speeds.append(MachineSpeed.measure(shape, args.beam_width))
        print(f"this machine at [{PEAK_ROWS} or {args.beam_width} x {shape.units}] x "
              f"[{shape.units} x {shape.vocab}]: {speeds[0]}")
    results = []
    for batch_size in args.batch_sizes:
        result = measure(signature, sources, batch_size, options, shape)
        results.append(result)
        line = (f"batch {batch_size:>3}: {result['sentences_per_second']:8.2f} sentences/s "
                f"{result['target_tokens_per_second']:9.1f} target tokens/s, "
                f"{result['decoder_steps_per_batch']:.1f} steps per batch at "
                f"{result['ms_per_step']} ms")
        if speeds:
            result["share_of_peak"] = round(result["effective_gflops"] / speeds[0].peak_gflops,
                                            3)
            result["share_of_stream"] = round(result["read_gbps"] / speeds[0].stream_gbps, 3)
            line += (f", {result['effective_gflops']:.1f} GFLOP/s "
                     f"({result['share_of_peak']:.0%} of peak), reading "
                     f"{result['read_gbps']:.1f} GB/s ({result['share_of_stream']:.0%} of "
                     "the streaming rate)")
        print(f"{line} (p50 batch latency {result['batch_latency_p50_ms']} ms; first pass, "
              f"compilations included: {result['first_pass_seconds']:.1f} s against "
              f"{result['seconds']:.1f} s)")
        if args.trace:
            result["ms_per_step_by_op"] = traced_step(
                signature, sources[:batch_size], options, Path(args.trace) / f"batch-{batch_size}")
    if shape is not None:
        speeds.append(MachineSpeed.measure(shape, args.beam_width))
        print(f"this machine again: {speeds[1]}")
    if args.output:
        Path(args.output).write_text(json.dumps(
            {"export": args.export, "beam_width": args.beam_width, "options": options,
             **thread_settings(args),
             "model": shape and dataclasses.asdict(shape), "export_options": exported,
             "matmul_peak_gflops": [round(speed.peak_gflops, 1) for speed in speeds],
             "stream_gbps": [round(speed.stream_gbps, 1) for speed in speeds],
             "results": results},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
