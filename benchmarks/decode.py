"""Offline decoding throughput of a translation export, called in-process.

    python -m benchmarks.decode exports/translate-en-fr/1 --batch-sizes 1 64

Translates real held-out sentences (the Bible test books, or --source-file) in
batches through the SavedModel's `translate` signature, after one warm-up batch,
and prints sentences/s and target tokens/s (tokens of the best hypothesis, EOS
excluded, as CTranslate2's tables count them) per batch size; --output writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from model.startup import import_tensorflow

import_tensorflow()  # before anything else imports it: quietly

import tensorflow as tf  # noqa: E402

from model.contract import MAX_LENGTH, MAX_LENGTH_RATIO, TEXTS, TRANSLATE, Meta  # noqa: E402
from model.export import read_metadata  # noqa: E402
from training.corpora import load_bible_pairs  # noqa: E402


def translate(signature, sources: list[str], options: Mapping) -> list[int]:
    """Translates a batch exactly as the server does; returns each best output's length."""
    out = TRANSLATE.signature.call(signature, [{**options, TEXTS.name: s} for s in sources])
    return out["num_tokens"][:, 0].tolist()


def measure(signature, sources: list[str], batch_size: int, options: Mapping) -> dict:
    """Decodes `sources` in batches of `batch_size`; one untimed warm-up batch first."""
    translate(signature, sources[:batch_size], options)
    latencies, tokens = [], 0
    started = time.perf_counter()
    for start in range(0, len(sources), batch_size):
        batch_started = time.perf_counter()
        tokens += sum(translate(signature, sources[start:start + batch_size], options))
        latencies.append(time.perf_counter() - batch_started)
    seconds = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "target_tokens_per_second": round(tokens / seconds, 1),
        "batch_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
    }


def decode_options(metadata: Mapping, beam_width: int, length_penalty: float) -> dict:
    """The options a server gives a request that sets only these two."""
    return {"beam_width": beam_width, "num_hypotheses": 1, "length_penalty": length_penalty,
            MAX_LENGTH.name: int(metadata.get(MAX_LENGTH.name, 512)),
            MAX_LENGTH_RATIO.name: float(metadata.get(MAX_LENGTH_RATIO.name, 2.0))}


def load_signature(export: str):
    metadata = read_metadata(Path(export))
    name = metadata.get(Meta.SIGNATURE, TRANSLATE.signature.name)
    return tf.saved_model.load(export).signatures[name], metadata


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
    parser.add_argument("--beam-width", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="(default: %(default)s)")
    parser.add_argument("--source-file", default="",
                        help="one source sentence per line (default: the export's source "
                             "language from the Bible test books)")
    parser.add_argument("--output", default="", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    signature, metadata = load_signature(args.export)
    sources = load_sources(args.source_file, metadata.get("source_language", "en"),
                           args.sentences)
    options = decode_options(metadata, args.beam_width, args.length_penalty)
    print(f"{args.export}: {len(sources)} sentences, beam {args.beam_width}, "
          f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    results = []
    for batch_size in args.batch_sizes:
        result = measure(signature, sources, batch_size, options)
        results.append(result)
        print(f"batch {batch_size:>3}: {result['sentences_per_second']:8.2f} sentences/s "
              f"{result['target_tokens_per_second']:9.1f} target tokens/s "
              f"(p50 batch latency {result['batch_latency_p50_ms']} ms)")
    if args.output:
        Path(args.output).write_text(json.dumps(
            {"export": args.export, "beam_width": args.beam_width, "results": results},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
