"""Load benchmark: the real server on loopback, driven by concurrent gRPC clients.

    python -m serving.bench exports --model translate-en-fr --output bench

Starts `python -m serving` on free localhost ports with the given export base,
then, with beam 4 on real held-out sentences (the Bible test books):
  1. closed-loop load at 1, 4, 16 and 64 concurrent clients: throughput
     (sentences/s, target tokens/s) and latency p50/p95/p99;
  2. the same export called in-process at batch size = concurrency (offline),
     and the ratio server/offline: what serving costs on top of the model;
  3. overload: open-loop arrivals at 4x the saturated rate, each with a deadline;
     counts what met its deadline, what was refused (and how fast), and checks
     that every request got an answer (nothing lost or hung).
Every loop is bounded in requests and seconds. Prints a table and writes
OUTPUT.json and OUTPUT.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from serving.process import ServerProcess  # the same harness the tests use


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def request(model: str, text: str, beam: int) -> recur_pb2.TranslateRequest:
    return recur_pb2.TranslateRequest(model=recur_pb2.ModelSpec(name=model), texts=[text],
                                      options=recur_pb2.DecodeOptions(beam_width=beam,
                                                                      num_hypotheses=1))


def closed_loop(target: str, model: str, sources: list[str], clients: int, total: int,
                beam: int) -> dict:
    """`clients` threads each send one sentence at a time until `total` are answered."""
    latencies: list[float] = []
    tokens = [0]
    errors: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def client_loop():
        with RecurClient(target, timeout=120) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    response = client.stub.Translate(
                        request(model, sources[i % len(sources)], beam), timeout=120)
                except grpc.RpcError as error:
                    errors.append(error.code().name)
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
                    tokens[0] += response.results[0].hypotheses[0].num_tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client_loop)
    seconds = time.perf_counter() - started
    return {"clients": clients, "requests": total, "errors": len(errors),
            "sentences_per_second": round(len(latencies) / seconds, 2),
            "target_tokens_per_second": round(tokens[0] / seconds, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p95_ms": round(percentile(latencies, 95) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


def overload(target: str, model: str, sources: list[str], rate: float, seconds: float,
             deadline: float, beam: int) -> dict:
    """Open-loop arrivals at `rate`/s for `seconds`; every request carries `deadline`."""
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()
    with RecurClient(target, timeout=deadline) as client:
        futures = []
        started = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            future = client.stub.Translate.future(
                request(model, sources[i % len(sources)], beam), timeout=deadline)

            def done(f, sent=sent):
                code = f.code().name if f.code() != grpc.StatusCode.OK else "OK"
                with lock:
                    outcomes.append((code, time.perf_counter() - sent))

            future.add_done_callback(done)
            futures.append(future)
        hung = 0
        for future in futures:
            try:
                future.result(timeout=deadline + 30)
            except grpc.FutureTimeoutError:
                hung += 1
            except grpc.RpcError:
                pass
    by_code: dict[str, list[float]] = {}
    for code, latency in outcomes:
        by_code.setdefault(code, []).append(latency)
    return {"rate_per_second": round(rate, 1), "seconds": seconds, "deadline_s": deadline,
            "sent": len(futures), "answered": len(outcomes), "hung": hung,
            "codes": {code: len(v) for code, v in sorted(by_code.items())},
            "ok_p99_ms": round(percentile(by_code["OK"], 99) * 1000, 1)
            if by_code.get("OK") else None,
            "refused_p99_ms": round(percentile(by_code["RESOURCE_EXHAUSTED"], 99) * 1000, 1)
            if by_code.get("RESOURCE_EXHAUSTED") else None}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["concurrency"]
    clients = [r["clients"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(clients, [r["sentences_per_second"] for r in rows], "o-", label="server")
    left.plot(clients, [r["offline_sentences_per_second"] for r in rows], "s--",
              label="in-process, batch = clients")
    left.set(xscale="log", xlabel="concurrent clients", ylabel="sentences/s",
             title="Throughput, beam 4")
    left.legend()
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        right.plot(clients, [r[q] for r in rows], "o-", label=q.split("_")[0])
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms",
              title="Request latency")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_base_path", help="export base holding MODEL/VERSION/")
    parser.add_argument("--model", default="translate-en-fr", help="(default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="(default: %(default)s)")
    parser.add_argument("--requests-per-client", type=int, default=8,
                        help="closed-loop requests per client, at least 64 per level "
                             "(default: %(default)s)")
    parser.add_argument("--beam-width", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--overload-factor", type=float, default=4.0,
                        help="overload arrival rate / saturated rate (default: %(default)s)")
    parser.add_argument("--overload-seconds", type=float, default=10.0,
                        help="(default: %(default)s)")
    parser.add_argument("--deadline", type=float, default=5.0,
                        help="deadline of each overload request, s (default: %(default)s)")
    parser.add_argument("--output", default="bench", help="writes OUTPUT.json and OUTPUT.png")
    parser.add_argument("--server-args", default="",
                        help="extra flags for python -m serving (default: none)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from serving.decode_benchmark import load_sources, measure
    from serving.runners import DecodeKey

    export = Path(args.model_base_path) / args.model
    version = max(int(p.name) for p in export.iterdir() if p.name.isdigit())
    metadata = json.loads((export / str(version) / "recur.json").read_text())
    sources = load_sources("", metadata.get("source_language", "en"), 1024)
    server = ServerProcess(Path(args.model_base_path), "--poll-seconds", "0",
                           *args.server_args.split())
    server.wait_until_serving()
    results: dict = {"export": str(export / str(version)), "beam_width": args.beam_width,
                     "cpu_cores": os.cpu_count(), "concurrency": []}
    try:
        signature = tf.saved_model.load(str(export / str(version))).signatures["translate"]
        key = DecodeKey(args.beam_width, 1, 0.6, int(metadata["max_length"]),
                        float(metadata.get("max_length_ratio", 2.0)))
        print(f"{'clients':>7} {'sent/s':>8} {'tok/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'p99 ms':>8} {'offline sent/s':>15} {'server/offline':>15}")
        for clients in args.concurrency:
            total = max(64, clients * args.requests_per_client)
            row = closed_loop(server.target, args.model, sources, clients, total,
                              args.beam_width)
            offline = measure(signature, sources[:total], clients, key)
            row["offline_sentences_per_second"] = offline["sentences_per_second"]
            row["server_over_offline"] = round(
                row["sentences_per_second"] / offline["sentences_per_second"], 3)
            results["concurrency"].append(row)
            print(f"{clients:>7} {row['sentences_per_second']:>8} "
                  f"{row['target_tokens_per_second']:>8} {row['p50_ms']:>8} "
                  f"{row['p95_ms']:>8} {row['p99_ms']:>8} "
                  f"{row['offline_sentences_per_second']:>15} "
                  f"{row['server_over_offline']:>15}")
        saturated = max(r["sentences_per_second"] for r in results["concurrency"])
        results["overload"] = overload(server.target, args.model, sources,
                                       saturated * args.overload_factor,
                                       args.overload_seconds, args.deadline, args.beam_width)
        print("overload:", json.dumps(results["overload"]))
    finally:
        results["server_exit_code"] = server.stop()
    Path(f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, Path(f"{args.output}.png"))
    print(f"wrote {args.output}.json and {args.output}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
