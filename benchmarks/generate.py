"""Character generation speed, in-process and through the real server.

    python -m benchmarks.generate exports --model charlm-lstm --output docs/bench-generate

Continues real held-out text (the first --prompt-chars characters of Penn Treebank test
lines), sampling --max-chars characters per prompt, and prints characters/s and the
time to the first chunk (p50 / p99) at each --streams:
  1. in-process: the export's own step functions as the server drives them, one batch
     of `streams` prompts: `begin`, one `advance` step (the first characters: what a
     stream's first chunk waits for), then `advance` to the end;
  2. through `python -m serving` on loopback: `streams` closed-loop clients, each
     holding one GenerateStream open at a time, --requests-per-stream times; the first
     chunk is timed from the call to its first non-empty message. Right after each level
     the in-process figure of the same batch is measured again, and the ratio server /
     in-process printed, so both come from the same minute of this shared machine.
Writes OUTPUT.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from model.startup import import_tensorflow

import_tensorflow(initialize=False)  # quietly, before anything else imports it; the
# runtime starts in `start_tensorflow`, once the thread flags are known

import tensorflow as tf  # noqa: E402

from benchmarks.decode import (  # noqa: E402
    add_thread_arguments,
    load_export,
    start_tensorflow,
    thread_settings,
)
from benchmarks.load import (  # noqa: E402
    against_in_process,
    drive,
    percentile,
    write_results,
)
from model.contract import ENDED  # noqa: E402
from model.export import versions  # noqa: E402
from protos.recur.v1 import recur_pb2  # noqa: E402
from serving.client import RecurClient  # noqa: E402
from serving.process import ServerProcess  # noqa: E402
from training.corpora import load_ptb_chars  # noqa: E402


def first_chunk_summary(seconds: list[float]) -> dict:
    return {f"first_chunk_p{q}_ms": round(percentile(seconds, q) * 1000, 1) for q in (50, 99)}


def offline(loaded, prompts: list[str], streams: int, max_chars: int, rounds: int) -> dict:
    """`rounds` batches of `streams` prompts through begin / advance, after one untimed
    warm-up batch."""
    def run(batch: list[str], seed: int) -> tuple[float, float]:
        n = len(batch)
        started = time.perf_counter()
        beams, _ = loaded.begin(
            texts=tf.constant(batch), beam_width=tf.constant(1),
            max_length=tf.fill([n], max_chars), temperature=tf.fill([n], 1.0),
            top_k=tf.zeros([n], tf.int32), top_p=tf.ones([n]),
            seed=tf.range(seed, seed + n, dtype=tf.int64))
        beams, out = loaded.advance(beams, tf.constant(1))
        out["partial_texts"].numpy()  # the first chunk is in hand
        first = time.perf_counter() - started
        while not out[ENDED].numpy().all():
            beams, out = loaded.advance(beams, tf.constant(max_chars + 1))
        return first, time.perf_counter() - started

    run(prompts[:streams], 0)
    firsts, total = [], 0.0
    for r in range(rounds):
        batch = [prompts[(r * streams + i) % len(prompts)] for i in range(streams)]
        first, seconds = run(batch, r * streams)
        firsts.append(first)
        total += seconds
    return {"streams": streams, "chars_per_second": round(rounds * streams * max_chars / total),
            **first_chunk_summary(firsts)}


def served(target: str, model: str, prompts: list[str], streams: int, max_chars: int,
           total: int) -> dict:
    firsts: list[float] = []

    def send(client: RecurClient, i: int) -> int:
        started = time.perf_counter()
        chars, first = 0, None
        for chunk in client.stub.GenerateStream(recur_pb2.GenerateRequest(
                model=recur_pb2.ModelSpec(name=model), prompt=prompts[i % len(prompts)],
                max_chars=max_chars, seed=i), timeout=120):
            if first is None and chunk.text:
                first = time.perf_counter() - started
            chars += len(chunk.text)
        if i < total:  # not a warm-up request
            firsts.append(first if first is not None else time.perf_counter() - started)
        return chars

    run = drive(target, streams, total, send)
    return {"streams": streams, "requests": total, "errors": len(run.errors),
            "chars_per_second": round(run.units_per_second()), **first_chunk_summary(firsts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_base_path", help="export base holding MODEL/VERSION/")
    parser.add_argument("--model", default="charlm-lstm",
                        help="model name under MODEL_BASE_PATH (default: %(default)s)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 64],
                        help="concurrent streams, one level each (default: %(default)s)")
    parser.add_argument("--max-chars", type=int, default=200,
                        help="characters generated per prompt (default: %(default)s)")
    parser.add_argument("--prompt-chars", type=int, default=40,
                        help="characters of each test line used as prompt (default: "
                             "%(default)s)")
    parser.add_argument("--requests-per-stream", type=int, default=8,
                        help="streams each client opens one after the other, per level "
                             "(default: %(default)s)")
    parser.add_argument("--output", default="bench-generate", help="writes OUTPUT.json")
    add_thread_arguments(parser)
    args = parser.parse_args(argv)
    threads = start_tensorflow(args)

    export = Path(args.model_base_path) / args.model
    path = export / str(max(versions(export)))
    loaded = load_export(path)
    lines = [line for line in load_ptb_chars().test[0].splitlines() if line.strip()]
    prompts = [line[:args.prompt_chars] for line in lines]
    print(f"{path}: {len(prompts)} PTB test prompts of up to {args.prompt_chars} characters, "
          f"{args.max_chars} characters sampled each")
    results: dict = {"export": str(path), "cpu_cores": os.cpu_count(), **thread_settings(args),
                     "max_chars": args.max_chars, "offline": [], "server": []}
    print(f"\nin-process\n{'streams':>8} {'chars/s':>10} {'1st p50 ms':>11} {'1st p99 ms':>11}")
    for streams in args.streams:
        row = offline(loaded, prompts, streams, args.max_chars, args.requests_per_stream)
        results["offline"].append(row)
        print(f"{streams:>8} {row['chars_per_second']:>10} {row['first_chunk_p50_ms']:>11} "
              f"{row['first_chunk_p99_ms']:>11}")

    server = ServerProcess(Path(args.model_base_path), "--poll-seconds", "0", *threads)
    server.wait_until_serving()
    print("\nserver")
    try:
        results["server"] = against_in_process(
            args.streams,
            lambda streams: served(server.target, args.model, prompts, streams, args.max_chars,
                                   streams * args.requests_per_stream),
            lambda streams: offline(loaded, prompts, streams, args.max_chars, 2)[
                "chars_per_second"],
            "chars", "streams", ["first_chunk_p50_ms", "first_chunk_p99_ms"])
    finally:
        results["server_exit_code"] = server.stop()
    return write_results(results, args.output)


if __name__ == "__main__":
    sys.exit(main())
