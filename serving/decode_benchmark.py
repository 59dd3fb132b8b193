"""Offline decoding throughput of a translation export, called in-process.

    python -m serving.decode_benchmark exports/translate-en-fr/1 --batch-sizes 1 64

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
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the SentencePiece ops

from model.export import read_metadata
from serving.runners import DecodeKey, translate_batch


def measure(signature, sources: list[str], batch_size: int, key: DecodeKey) -> dict:
    """Decodes `sources` in batches of `batch_size`; one untimed warm-up batch first."""
    translate_batch(signature, key, sources[:batch_size])
    latencies, tokens = [], 0
    started = time.perf_counter()
    for start in range(0, len(sources), batch_size):
        batch_started = time.perf_counter()
        results = translate_batch(signature, key, sources[start:start + batch_size])
        latencies.append(time.perf_counter() - batch_started)
        tokens += sum(nbest[0].num_tokens for nbest in results)
    seconds = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "target_tokens_per_second": round(tokens / seconds, 1),
        "batch_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
    }


def load_sources(source_file: str, language: str, count: int) -> list[str]:
    if source_file:
        lines = [line.strip() for line in Path(source_file).read_text().splitlines()]
        sources = [line for line in lines if line]
    else:
        from training.corpora import load_bible_pairs

        sources = [s for s, _ in load_bible_pairs(language, "fr" if language != "fr" else "en")
                   .test]
    return sources[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.decode_benchmark",
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

    metadata = read_metadata(Path(args.export))
    signature = tf.saved_model.load(args.export).signatures[metadata.get("signature",
                                                                       "translate")]
    sources = load_sources(args.source_file, metadata.get("source_language", "en"),
                           args.sentences)
    key = DecodeKey(args.beam_width, 1, args.length_penalty,
                    int(metadata.get("max_length", 512)),
                    float(metadata.get("max_length_ratio", 2.0)))
    print(f"{args.export}: {len(sources)} sentences, beam {args.beam_width}, "
          f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    results = []
    for batch_size in args.batch_sizes:
        result = measure(signature, sources, batch_size, key)
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
