"""Captioning throughput, in-process and through the real server.

    python -m benchmarks.caption exports --model caption-emoji --output docs/bench-caption

Captions real held-out images (the emoji test split, as PNG bytes, as a client sends
them) with beam search and prints images/s:
  1. in-process: the export's `caption` signature called with batches of images;
  2. in-process through serving's step scheduler (`StepDecoder`, the export's `begin`
     and `advance`), no gRPC: at each --concurrency that many images in flight, each
     replaced by the next as soon as it is answered (started on the thread that reads
     the answers, beside the decoder's own loop); beside the signature at that batch,
     what step scheduling itself costs, apart from gRPC, the event loop and clients;
  3. through `python -m serving` on loopback: closed-loop gRPC clients, one image per
     Caption request, at each --concurrency; right after each level the same export
     in-process at the batch the server can form (clients, at most its
     --max-batch-size), and the ratio server / in-process, so both figures of a ratio
     come from the same minute of this shared machine.
Writes OUTPUT.json.
"""

from __future__ import annotations

import argparse
import json
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
from model.contract import CAPTION, IMAGES, MAX_LENGTH, METADATA_FILE  # noqa: E402
from model.export import versions  # noqa: E402
from protos.recur.v1 import recur_pb2  # noqa: E402
from serving.client import RecurClient  # noqa: E402
from serving.config import LimitsConfig  # noqa: E402
from serving.process import ServerProcess  # noqa: E402
from serving.step_decoder import StepDecoder  # noqa: E402
from training.corpora import load_emoji  # noqa: E402

# the server's default (the clients set none), so that all three measure one decode
LENGTH_PENALTY = LimitsConfig().default_length_penalty


def offline(signature, images: list[bytes], batch_size: int, beam_width: int,
            max_length: int) -> dict:
    """Captions `images` in batches of `batch_size` after one untimed warm-up batch."""
    def run(batch: list[bytes]) -> None:
        CAPTION.signature.call(signature, [
            {IMAGES.name: image, "beam_width": beam_width, "num_hypotheses": 1,
             "length_penalty": LENGTH_PENALTY, "max_length": max_length}
            for image in batch])

    run(images[:batch_size])
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        run(images[start:start + batch_size])
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "images": len(images),
            "images_per_second": round(len(images) / seconds, 1), "seconds": round(seconds, 2)}


def stepped(saved_model, images: list[bytes], in_flight: int, total: int, beam_width: int,
            max_length: int) -> dict:
    """`total` images through a `StepDecoder` on the export, `in_flight` at a time: the
    answered ones in each batch of news are replaced by as many new ones (started and
    joined at once), after an untimed warm-up round."""
    decoder = StepDecoder("", saved_model, CAPTION.begin)

    def start(first: int, count: int) -> None:
        decoder.join(decoder.start([
            (i, [{IMAGES.name: images[i % len(images)], "beam_width": beam_width,
                  "length_penalty": LENGTH_PENALTY, "max_length": max_length}])
            for i in range(first, first + count)]))

    def run(count: int) -> tuple[float, int, int]:
        start(0, min(in_flight, count))
        sent, news, answered = min(in_flight, count), 0, 0
        started = time.perf_counter()
        while decoder.rows:
            finished, _ = decoder.step()
            news += 1
            answered += len(finished)
            if finished and sent < count:
                more = min(len(finished), count - sent)
                start(sent, more)
                sent += more
        return time.perf_counter() - started, news, answered

    run(in_flight)
    seconds, news, answered = run(total)
    decoder.close()
    return {"in_flight": in_flight, "images": answered, "news": news,
            "images_per_second": round(answered / seconds, 1), "seconds": round(seconds, 2)}


def closed_loop(target: str, model: str, images: list[bytes], clients: int, total: int,
                beam_width: int, max_length: int) -> dict:
    """`clients` threads each send one Caption request at a time until `total` are
    answered."""
    def send(client: RecurClient, i: int) -> int:
        client.stub.Caption(recur_pb2.CaptionRequest(
            model=recur_pb2.ModelSpec(name=model), image=images[i % len(images)],
            options=recur_pb2.DecodeOptions(beam_width=beam_width, max_length=max_length)),
            timeout=120)
        return 1

    run = drive(target, clients, total, send)
    return {"clients": clients, "requests": total, "errors": len(run.errors),
            "images_per_second": round(run.units_per_second(), 1),
            **latency_summary([s for _, s in run.latencies])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.caption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_base_path", help="export base holding MODEL/VERSION/")
    parser.add_argument("--model", default="caption-emoji",
                        help="model name under MODEL_BASE_PATH (default: %(default)s)")
    parser.add_argument("--beam-width", type=int, default=4,
                        help="beam width of every caption (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64],
                        help="in-process batch sizes, in images (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64],
                        help="concurrent gRPC clients (default: %(default)s)")
    parser.add_argument("--requests-per-client", type=int, default=8,
                        help="closed-loop requests per client (default: %(default)s)")
    parser.add_argument("--min-requests", type=int, default=512,
                        help="closed-loop requests per level at least: fewer last a second "
                             "or two at 16 clients, too short for a steady figure "
                             "(default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=64,
                        help="the server's --max-batch-size (default: %(default)s)")
    parser.add_argument("--scheduling", default="step", choices=["step", "request"],
                        help="the server's --scheduling (default: %(default)s)")
    parser.add_argument("--output", default="bench-caption", help="writes OUTPUT.json")
    add_thread_arguments(parser)
    args = parser.parse_args(argv)
    threads = start_tensorflow(args)

    export = Path(args.model_base_path) / args.model
    path = export / str(max(versions(export)))
    saved_model = load_export(path)
    signature = saved_model.signatures[CAPTION.signature.name]
    max_length = json.loads((path / METADATA_FILE).read_text())[MAX_LENGTH.name]
    images = [image.path.read_bytes() for image in load_emoji().test]
    print(f"{path}: {len(images)} emoji test images (PNG), beam {args.beam_width}, captions "
          f"of at most {max_length} subwords")
    results: dict = {"export": str(path), "cpu_cores": os.cpu_count(),
                     **thread_settings(args),
                     "beam_width": args.beam_width, "scheduling": args.scheduling,
                     "offline": [], "stepped": [], "server": []}
    print(f"\nin-process\n{'batch':>8} {'images/s':>10}")
    for batch_size in args.batch_sizes:
        row = offline(signature, images, batch_size, args.beam_width, max_length)
        results["offline"].append(row)
        print(f"{batch_size:>8} {row['images_per_second']:>10}")

    print("\nin-process, step scheduler (no gRPC)\n"
          f"{'images':>8} {'images/s':>10} {'news':>8} {'signature':>10} {'ratio':>6}")
    for in_flight in args.concurrency:
        n = min(in_flight, args.max_batch_size)
        row = stepped(saved_model, images, n, max(args.min_requests, n * 8), args.beam_width,
                      max_length)
        row["signature_images_per_second"] = offline(
            signature, images, n, args.beam_width, max_length)["images_per_second"]
        row["stepped_over_signature"] = round(
            row["images_per_second"] / row["signature_images_per_second"], 3)
        results["stepped"].append(row)
        print(f"{n:>8} {row['images_per_second']:>10} {row['news']:>8} "
              f"{row['signature_images_per_second']:>10} {row['stepped_over_signature']:>6}")

    server = ServerProcess(Path(args.model_base_path), "--poll-seconds", "0",
                           "--max-batch-size", str(args.max_batch_size),
                           "--scheduling", args.scheduling, *threads)
    server.wait_until_serving()
    print(f"\nserver ({args.scheduling} scheduling), one image per request")
    try:
        results["server"] = against_in_process(
            args.concurrency,
            lambda clients: closed_loop(server.target, args.model, images, clients,
                                        max(args.min_requests, clients * args.requests_per_client),
                                        args.beam_width, max_length),
            lambda clients: offline(signature, images, min(clients, args.max_batch_size),
                                    args.beam_width, max_length)["images_per_second"],
            "images", "clients", ["p50_ms", "p99_ms"])
    finally:
        results["server_exit_code"] = server.stop()
    return write_results(results, args.output)


if __name__ == "__main__":
    sys.exit(main())
