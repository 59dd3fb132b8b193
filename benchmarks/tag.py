"""Tagging throughput, in-process and through the real server.

    python -m benchmarks.tag exports --model tag-en-universal --output docs/bench-tag

Tags real held-out text (the Brown test files, each sentence's tokens joined by spaces
and tokenised by the model, as a client's raw text is) and prints tokens/s:
  1. in-process: the export's `tag` signature called with batches of sentences;
  2. through `python -m serving` on loopback: closed-loop gRPC clients, each request
     carrying --sentences-per-request sentences, at each --concurrency; right after
     each level the same export in-process at the batch the server can form (clients x
     sentences per request, at most its --max-batch-size), and the ratio server /
     in-process, so both figures of a ratio come from the same minute of this shared
     machine.
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

from benchmarks.decode import (  # noqa: E402
    add_thread_arguments,
    load_export,
    start_tensorflow,
    thread_settings,
)
from benchmarks.load import (  # noqa: E402
    against_in_process,
    drive,
    latency_summary,
    write_results,
)
from model.contract import PRETOKENIZED, TAG, TEXTS  # noqa: E402
from model.export import versions  # noqa: E402
from protos.recur.v1 import recur_pb2  # noqa: E402
from serving.client import RecurClient  # noqa: E402
from serving.process import ServerProcess  # noqa: E402
from training.corpora import load_brown  # noqa: E402


def offline(signature, texts: list[str], batch_size: int) -> dict:
    """Tags `texts` in batches of `batch_size` after one untimed warm-up batch."""
    def run(batch: list[str]) -> int:
        out = TAG.signature.call(signature, [{TEXTS.name: t, PRETOKENIZED.name: False}
                                             for t in batch])
        return int(out["source_tokens"].sum())

    run(texts[:batch_size])
    tokens, started = 0, time.perf_counter()
    for start in range(0, len(texts), batch_size):
        tokens += run(texts[start:start + batch_size])
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "sentences": len(texts),
            "tokens_per_second": round(tokens / seconds), "seconds": round(seconds, 2)}


def closed_loop(target: str, model: str, texts: list[str], clients: int, per_request: int,
                total: int) -> dict:
    """`clients` threads each send one request of `per_request` texts at a time until
    `total` requests are answered."""
    def send(client: RecurClient, i: int) -> int:
        start = (i * per_request) % (len(texts) - per_request + 1)
        response = client.stub.Tag(recur_pb2.TagRequest(
            model=recur_pb2.ModelSpec(name=model), texts=texts[start:start + per_request]),
            timeout=120)
        return sum(len(result.tokens) for result in response.results)

    run = drive(target, clients, total, send)
    return {"clients": clients, "requests": total, "errors": len(run.errors),
            "tokens_per_second": round(run.units_per_second()),
            "requests_per_second": round(run.answers_per_second(), 1),
            **latency_summary([s for _, s in run.latencies])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_base_path", help="export base holding MODEL/VERSION/")
    parser.add_argument("--model", default="tag-en-universal",
                        help="model name under MODEL_BASE_PATH (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64],
                        help="in-process batch sizes, in sentences (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64],
                        help="concurrent gRPC clients (default: %(default)s)")
    parser.add_argument("--sentences-per-request", type=int, default=4,
                        help="sentences in each Tag request (default: %(default)s)")
    parser.add_argument("--requests-per-client", type=int, default=64,
                        help="closed-loop requests per client, at least 128 per level; "
                             "fewer make a short run that opening 64 channels and the "
                             "machine's noise weigh on (default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=64,
                        help="the server's --max-batch-size (default: %(default)s)")
    parser.add_argument("--sentences", type=int, default=2048,
                        help="Brown test sentences used (default: %(default)s)")
    parser.add_argument("--output", default="bench-tag", help="writes OUTPUT.json")
    add_thread_arguments(parser)
    args = parser.parse_args(argv)
    threads = start_tensorflow(args)

    export = Path(args.model_base_path) / args.model
    path = export / str(max(versions(export)))
    signature = load_export(path).signatures[TAG.signature.name]
    texts = [" ".join(word for word, _ in s) for s in load_brown().test[:args.sentences]]
    if len(texts) < args.sentences_per_request:
        parser.error(f"--sentences ({len(texts)}) must be at least --sentences-per-request")
    print(f"{path}: {len(texts)} Brown test sentences, "
          f"{sum(len(t.split()) for t in texts) / len(texts):.1f} words each on average")
    results: dict = {"export": str(path), "cpu_cores": os.cpu_count(), **thread_settings(args),
                     "sentences_per_request": args.sentences_per_request,
                     "offline": [], "server": []}
    print(f"\nin-process\n{'batch':>8} {'tokens/s':>10}")
    for batch_size in args.batch_sizes:
        row = offline(signature, texts, batch_size)
        results["offline"].append(row)
        print(f"{batch_size:>8} {row['tokens_per_second']:>10}")

    server = ServerProcess(Path(args.model_base_path), "--poll-seconds", "0",
                           "--max-batch-size", str(args.max_batch_size), *threads)
    server.wait_until_serving()
    print(f"\nserver, {args.sentences_per_request} sentences per request")
    per_request = args.sentences_per_request
    try:
        results["server"] = against_in_process(
            args.concurrency,
            lambda clients: closed_loop(server.target, args.model, texts, clients, per_request,
                                        max(128, clients * args.requests_per_client)),
            lambda clients: offline(signature, texts, min(clients * per_request,
                                                          args.max_batch_size))[
                "tokens_per_second"],
            "tokens", "clients", ["p50_ms", "p99_ms"])
    finally:
        results["server_exit_code"] = server.stop()
    return write_results(results, args.output)


if __name__ == "__main__":
    sys.exit(main())
