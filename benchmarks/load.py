"""Load benchmark: the real server on loopback, driven by concurrent gRPC clients.

    python -m benchmarks.load exports --model translate-en-fr --output bench

With beam 4 on real held-out sentences (the Bible test books), it starts
`python -m serving` on free localhost ports once per scheduling policy (step,
request) and measures:
  1. closed-loop load at 1, 4, 16 and 64 concurrent clients: throughput
     (sentences/s, target tokens/s), latency p50/p95/p99; right after each level,
     the same export decoding in-process (offline) at batch size = clients, and
     the ratio server/offline: what serving costs on top of the model; with step
     scheduling also the step decoder alone in this process, as many inputs in
     flight as clients (engine), which splits that ratio into what continuous
     batching costs (engine/offline) and what the server around it costs
     (server/engine: gRPC, the batcher, threads);
  2. a mixed-length workload: the shortest and the longest quarter of the
     sentences, interleaved, from 16 clients: p99 latency of the short and of the
     long requests, and total throughput;
  3. overload: open-loop arrivals at 4x the saturated rate, each with a deadline;
     counts what met its deadline, what was refused (and how fast), and checks
     that every request got an answer (nothing lost or hung).
Every loop is bounded in requests and seconds. Prints tables and writes
OUTPUT.json and OUTPUT.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from benchmarks.decode import (
    add_thread_arguments,
    decode_options,
    load_export,
    load_signature,
    load_sources,
    measure,
    start_tensorflow,
    thread_settings,
)
from model.contract import TRANSLATE
from model.export import versions
from protos.recur.v1 import recur_pb2
from serving.batcher import SCHEDULING
from serving.client import RecurClient
from serving.process import ServerProcess  # the same harness the tests use
from serving.step_decoder import StepDecoder
from serving.task import Row


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def request(model: str, text: str, beam: int) -> recur_pb2.TranslateRequest:
    return recur_pb2.TranslateRequest(model=recur_pb2.ModelSpec(name=model), texts=[text],
                                      options=recur_pb2.DecodeOptions(beam_width=beam,
                                                                      num_hypotheses=1))


@dataclass
class Driven:
    latencies: list[tuple[int, float]]  # (request index, seconds) of each timed answer
    errors: list[str]  # status code names of the failed requests
    seconds: float  # the steady window: every client connected, warm and busy
    # Each client's (answers, units, seconds from the window's start to its last answer)
    # within the window.
    clients: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Answers within the window."""
        return sum(n for n, _, _ in self.clients)

    @property
    def units(self) -> int:
        """Output units (tokens) those answers carried."""
        return sum(u for _, u, _ in self.clients)

    def answers_per_second(self) -> float:
        return sum(n / t for n, _, t in self.clients if n)

    def units_per_second(self) -> float:
        return sum(u / t for n, u, t in self.clients if n)


WARM_UP_PER_CLIENT = 4


def drive(target: str, clients: int, total: int,
          send: Callable[[RecurClient, int], int]) -> Driven:
    """`clients` threads, each with its own channel, send requests 0..total-1 one at a
    time (`send(client, i)` makes the call and returns the output units it got) until
    all are answered: a closed loop, the load of `clients` waiting users.

    First `WARM_UP_PER_CLIENT` requests a client, untimed (indices from `total` on), as
    the in-process figures decode an untimed batch first: a server's first calls at new
    batch shapes are slower. The window then runs from when every client is connected
    and warm (each sends its first timed request) to when the first finds no request
    left: after it, the last requests run at ever lower concurrency.

    Throughput is each client's answers in the window over the time from the window's
    start to its last answer in it, summed over the clients (`Driven.answers_per_second`):
    whole request cycles of every client. Answers over the window's length would count
    the cycles cut by its end as time without answers: with batches of every client's
    requests at once (request scheduling), a run of 8 requests a client counted 7
    batches in 8 batch times."""
    if total < clients:
        raise ValueError(f"{total} requests cannot keep {clients} clients busy")
    driven = Driven([], [], 0.0)
    warm_ups = iter(range(total, total + clients * WARM_UP_PER_CLIENT))
    timed = iter(range(total))
    lock = threading.Lock()
    window: list[float] = []  # [start, end]
    ready = threading.Barrier(clients, action=lambda: window.append(time.perf_counter()))

    def send_all(client: RecurClient, indices: Iterator[int], timing: bool) -> None:
        answered, units, last = 0, 0, 0.0
        while True:
            with lock:
                i = next(indices, None)
                if i is None and timing and len(window) == 1:
                    window.append(time.perf_counter())  # the first client out
            if i is None:
                break
            started = time.perf_counter()
            try:
                got = send(client, i)
            except grpc.RpcError as error:
                if timing:
                    driven.errors.append(error.code().name)
                continue
            ended = time.perf_counter()
            if timing:
                with lock:
                    driven.latencies.append((i, ended - started))
                    if len(window) == 1:
                        answered, units, last = answered + 1, units + got, ended
        if timing:
            with lock:
                driven.clients.append((answered, units, last - window[0]))

    def client_loop() -> None:
        with RecurClient(target, timeout=120) as client:
            send_all(client, warm_ups, timing=False)
            ready.wait()
            send_all(client, timed, timing=True)

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()  # a client's own failure is the benchmark's
    driven.seconds = window[1] - window[0]
    return driven


def closed_loop(target: str, model: str, sources: list[str], clients: int, total: int,
                beam: int, labels: list[str] | None = None) -> dict:
    """`clients` threads each send one sentence at a time until `total` are answered.

    With `labels` (one per source), latency percentiles are also reported per label.
    """
    def send(client: RecurClient, i: int) -> int:
        response = client.stub.Translate(request(model, sources[i % len(sources)], beam),
                                         timeout=120)
        return response.results[0].hypotheses[0].num_tokens

    run = drive(target, clients, total, send)
    result = {"clients": clients, "requests": total, "errors": len(run.errors),
              "sentences_per_second": round(run.answers_per_second(), 2),
              "target_tokens_per_second": round(run.units_per_second(), 1),
              **latency_summary([s for _, s in run.latencies])}
    for label in sorted(set(labels or [])):
        result[label] = latency_summary([s for i, s in run.latencies
                                         if labels[i % len(sources)] == label])
    return result


def engine_closed_loop(decoder: StepDecoder, rows: Sequence[Row], in_flight: int,
                       total: int) -> float:
    """The step decoder alone, in this process, sentences/s: `in_flight` inputs decoding,
    each replaced by the next row as soon as it is answered, as `in_flight` closed-loop
    clients would be, but with no gRPC, batcher or start thread (`begin` runs here,
    between reads of the decode's news, once for the inputs answered in a piece of
    news). Timed from the first `in_flight` inputs joining to the `total`-th answer,
    with inputs still waiting to replace those answered; `in_flight` inputs decoded
    once first, untimed, as the server is warmed."""
    def run(count: int) -> float:
        started = 0

        def join(n: int) -> None:
            nonlocal started
            if n:
                decoder.join(decoder.start([(i, [rows[i % len(rows)]])
                                            for i in range(started, started + n)]))
                started += n

        began = time.perf_counter()
        join(in_flight)
        answered = 0
        while answered < count:
            finished, _ = decoder.step()
            answered += len(finished)
            join(len(finished))
        seconds = time.perf_counter() - began
        while decoder.rows:  # the inputs past `count`, untimed
            decoder.step()
        return answered / seconds

    run(in_flight)
    return run(total)


def against_in_process(levels: Sequence[int], served: Callable[[int], dict],
                       in_process: Callable[[int], float], unit: str, level_name: str,
                       shown: Sequence[str]) -> list[dict]:
    """The server half of a throughput benchmark: at each level (concurrent clients or
    streams) `served(level)`, a row with `<unit>_per_second`, then right away the same
    export in-process at that level (`in_process(level)`, units/s) and the ratio
    server / in-process, so both figures of a ratio come from the same minute of this
    shared machine. Prints a line per level, with the row's `shown` keys."""
    rate = f"{unit}_per_second"
    print(f"{level_name:>8} {unit + '/s':>10} " + "".join(f"{key:>20}" for key in shown)
          + f" {'in-process':>11} {'ratio':>6}")
    rows = []
    for level in levels:
        row = served(level)
        row[f"offline_{rate}"] = in_process(level)
        row["server_over_offline"] = round(row[rate] / row[f"offline_{rate}"], 3)
        rows.append(row)
        print(f"{level:>8} {row[rate]:>10} " + "".join(f"{row[key]:>20}" for key in shown)
              + f" {row[f'offline_{rate}']:>11} {row['server_over_offline']:>6}")
    return rows


def write_results(results: dict, output: str) -> int:
    """Writes OUTPUT.json; the exit code: 0 if the server stopped cleanly."""
    Path(f"{output}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}.json")
    return 0 if results["server_exit_code"] == 0 else 1


def latency_summary(seconds: list[float]) -> dict:
    return {f"p{q}_ms": round(percentile(seconds, q) * 1000, 1) if seconds else None
            for q in (50, 95, 99)}


def mixed_workload(sources: list[str]) -> tuple[list[str], list[str]]:
    """The shortest and the longest quarter of `sources` (by words), interleaved."""
    ordered = sorted(sources, key=lambda s: len(s.split()))
    quarter = max(1, len(ordered) // 4)
    short, long = ordered[:quarter], ordered[-quarter:]
    mixed = [s for pair in zip(short, long, strict=True) for s in pair]
    return mixed, ["short", "long"] * quarter


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

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    for (scheduling, run), color in zip(results["runs"].items(), ("C0", "C1"), strict=False):
        rows = run["concurrency"]
        clients = [r["clients"] for r in rows]
        left.plot(clients, [r["sentences_per_second"] for r in rows], "o-", color=color,
                  label=f"server, {scheduling} scheduling")
        left.plot(clients, [r["offline_sentences_per_second"] for r in rows], "s--",
                  color=color, alpha=0.5, label=f"in-process, measured with {scheduling}")
        if "engine_sentences_per_second" in rows[0]:
            left.plot(clients, [r["engine_sentences_per_second"] for r in rows], "^:",
                      color=color, alpha=0.7, label="step decoder alone, in-process")
        middle.plot(clients, [r["p99_ms"] for r in rows], "o-", color=color,
                    label=f"p99, {scheduling}")
        middle.plot(clients, [r["p50_ms"] for r in rows], ".:", color=color,
                    label=f"p50, {scheduling}")
    left.set(xscale="log", xlabel="concurrent clients", ylabel="sentences/s",
             title=f"Throughput, beam {results['beam_width']}")
    left.legend(fontsize=8)
    middle.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms",
               title="Request latency")
    middle.legend(fontsize=8)
    names = [n for n, run in results["runs"].items() if "mixed" in run]
    if names:
        mixed = [results["runs"][n]["mixed"] for n in names]
        x = range(len(names))
        right.bar([i - 0.2 for i in x], [m["short"]["p99_ms"] for m in mixed], 0.4,
                  color="C4", label="short sources, p99")
        right.bar([i + 0.2 for i in x], [m["long"]["p99_ms"] for m in mixed], 0.4,
                  color="C5", label="long sources, p99")
        right.set_xticks(list(x), [f"{n}\n{m['sentences_per_second']} sent/s"
                                   for n, m in zip(names, mixed, strict=True)])
        right.set(ylabel="ms", title=f"Mixed lengths, {mixed[0]['clients']} clients")
        right.legend(fontsize=8)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "mixed-length workload not run", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


RATIOS = ("server_over_offline", "engine_over_offline", "server_over_engine")
"""A closed-loop level's ratios, as printed (the engine's with step scheduling only)."""


def print_row(name: str, row: dict) -> None:
    print(f"{name:>16} {row['sentences_per_second']:>8} {row['target_tokens_per_second']:>8} "
          f"{row['p50_ms']:>8} {row['p95_ms']:>8} {row['p99_ms']:>8}"
          + "".join(f" {row[key]:>15}" for key in RATIOS if key in row))


def bench_server(args, scheduling: str, sources: list[str], offline: Callable,
                 engine: Callable[[int, int], float]) -> dict:
    """Every load against one server process with `scheduling`; offline(batch_size,
    total) measures in-process decoding right after each level (and with step
    scheduling engine(in_flight, total) the step decoder alone), so that the figures
    of a ratio come from the same minute of this shared machine."""
    server = ServerProcess(Path(args.model_base_path), "--poll-seconds", "0", "--scheduling",
                           scheduling, *args.threads, *args.server_args.split())
    server.wait_until_serving()
    run: dict = {"concurrency": []}
    ratios = RATIOS if scheduling == "step" else RATIOS[:1]
    print(f"\n{scheduling} scheduling\n{'':>16} {'sent/s':>8} {'tok/s':>8} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8} "
          + " ".join(f"{key.replace('_over_', '/'):>15}" for key in ratios))
    try:
        for clients in args.concurrency:
            total = max(64, clients * args.requests_per_client)
            row = closed_loop(server.target, args.model, sources, clients, total,
                              args.beam_width)
            row["offline_sentences_per_second"] = offline(clients, total)["sentences_per_second"]
            row["server_over_offline"] = round(
                row["sentences_per_second"] / row["offline_sentences_per_second"], 3)
            if scheduling == "step":
                row["engine_sentences_per_second"] = round(engine(clients, total), 2)
                row["engine_over_offline"] = round(
                    row["engine_sentences_per_second"] / row["offline_sentences_per_second"], 3)
                row["server_over_engine"] = round(
                    row["sentences_per_second"] / row["engine_sentences_per_second"], 3)
            run["concurrency"].append(row)
            print_row(f"{clients} clients", row)
        if args.mixed_requests:
            mixed, labels = mixed_workload(sources)
            run["mixed"] = closed_loop(server.target, args.model, mixed, args.mixed_clients,
                                       args.mixed_requests, args.beam_width, labels)
            print_row(f"mixed, {args.mixed_clients} cl.", run["mixed"])
            for label in ("short", "long"):
                print(f"{label:>16} {'':>17} " + " ".join(
                    f"{run['mixed'][label][q]:>8}" for q in ("p50_ms", "p95_ms", "p99_ms")))
        saturated = max(r["sentences_per_second"] for r in run["concurrency"])
        run["overload"] = overload(server.target, args.model, sources,
                                   saturated * args.overload_factor, args.overload_seconds,
                                   args.deadline, args.beam_width)
        print("overload:", json.dumps(run["overload"]))
    finally:
        run["server_exit_code"] = server.stop()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_base_path", help="export base holding MODEL/VERSION/")
    parser.add_argument("--model", default="translate-en-fr",
                        help="model name under MODEL_BASE_PATH (default: %(default)s)")
    parser.add_argument("--scheduling", nargs="+", default=list(SCHEDULING),
                        choices=SCHEDULING,
                        help="server scheduling policies to measure, one server each "
                             "(default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="closed-loop client counts, one level each (default: %(default)s)")
    parser.add_argument("--requests-per-client", type=int, default=8,
                        help="closed-loop requests per client, at least 64 per level "
                             "(default: %(default)s)")
    parser.add_argument("--mixed-clients", type=int, default=16,
                        help="concurrent clients of the mixed-length workload "
                             "(default: %(default)s)")
    parser.add_argument("--mixed-requests", type=int, default=256,
                        help="requests of the mixed-length workload, half short, half long; "
                             "0 = not run (default: %(default)s)")
    parser.add_argument("--beam-width", type=int, default=4,
                        help="beam width of every request (default: %(default)s)")
    parser.add_argument("--overload-factor", type=float, default=4.0,
                        help="overload arrival rate / saturated rate (default: %(default)s)")
    parser.add_argument("--overload-seconds", type=float, default=10.0,
                        help="how long the overload sends, s (default: %(default)s)")
    parser.add_argument("--deadline", type=float, default=5.0,
                        help="deadline of each overload request, s (default: %(default)s)")
    parser.add_argument("--output", default="bench", help="writes OUTPUT.json and OUTPUT.png")
    parser.add_argument("--server-args", default="",
                        help="extra flags for python -m serving (default: none)")
    add_thread_arguments(parser)
    args = parser.parse_args(argv)
    args.threads = start_tensorflow(args)

    export = Path(args.model_base_path) / args.model
    version = max(versions(export))
    signature, metadata = load_signature(str(export / str(version)))
    sources = load_sources("", metadata.get("source_language", "en"), 1024)
    options = decode_options(metadata, args.beam_width, 0.6)

    def offline(batch_size: int, total: int) -> dict:
        return measure(signature, sources[:total], batch_size, options)

    decoder = (StepDecoder("engine", load_export(export / str(version)), TRANSLATE.begin)
               if "step" in args.scheduling else None)  # the engine of step scheduling
    rows = [{**options, "texts": text} for text in sources]

    def engine(in_flight: int, total: int) -> float:
        return engine_closed_loop(decoder, rows, in_flight, total)

    try:
        results: dict = {"export": str(export / str(version)), "beam_width": args.beam_width,
                         "cpu_cores": os.cpu_count(), **thread_settings(args),
                         "runs": {s: bench_server(args, s, sources, offline, engine)
                                  for s in args.scheduling}}
    finally:
        if decoder is not None:
            decoder.close()
    Path(f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, Path(f"{args.output}.png"))
    print(f"wrote {args.output}.json and {args.output}.png")
    return 0 if all(r["server_exit_code"] == 0 for r in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
