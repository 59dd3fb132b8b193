"""Prometheus metrics, served on HTTP (default port 8501, path /metrics).

Names follow Prometheus conventions: prefix `recur_`, base units, counters end
in `_total`; labels are `model`, `method`, `code` only (no per-request values).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets from 1 ms to 60 s: beam search on a CPU spans that range.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter("recur_requests_total", "RPCs answered, by final status code",
                   ["model", "method", "code"])
REQUEST_SECONDS = Histogram("recur_request_duration_seconds",
                            "Time from receiving an RPC to answering it",
                            ["model", "method"], buckets=LATENCY_BUCKETS)
QUEUE_WAIT_SECONDS = Histogram("recur_queue_wait_seconds",
                               "Time a request waited in the batcher before inference",
                               ["model"], buckets=LATENCY_BUCKETS)
INFERENCE_SECONDS = Histogram("recur_inference_duration_seconds",
                              "Time spent running one batch through the model (step "
                              "scheduling: stepping a running decode between two pieces "
                              "of its news: inputs that ended, streams' progress)",
                              ["model"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("recur_batch_size", "Inputs (texts) per batch run through the model "
                       "(step scheduling: rows of a running decode at each piece of its "
                       "news, ended ones not yet dropped included)",
                       ["model"], buckets=BATCH_BUCKETS)
PADDING_RATIO = Histogram("recur_padding_ratio",
                          "Share of source positions that are padding in each model call "
                          "(a request-level batch, or the inputs decoding at each piece "
                          "of a step-level decode's news)",
                          ["model"], buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0))
DECODE_STEPS = Histogram("recur_decode_steps",
                         "Decoder steps per request-level batch (until its longest input "
                         "ended), or per input in step-level decoding (until it ended)",
                         ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
IN_FLIGHT = Gauge("recur_requests_in_flight", "RPCs received and not yet answered",
                  ["method"])
GENERATED_TOKENS = Counter("recur_generated_tokens_total",
                           "Output tokens in the hypotheses returned to clients", ["model"])
QUEUE_DEPTH = Gauge("recur_queue_depth", "Inputs waiting in the batcher", ["model"])
DROPPED = Counter("recur_batcher_dropped_total",
                  "Requests (or batch-sized parts of large ones) dropped before inference "
                  "because their deadline passed or their client cancelled", ["model"])
MODEL_VERSION = Gauge("recur_model_version", "Newest loaded version of each model", ["model"])
MODELS_SERVING = Gauge("recur_models_serving", "Models with a version loaded and serving "
                       "(0 while the first models load, and whenever none can be served)")
BATCHER_FAILURES = Counter("recur_batcher_failures_total",
                           "Batchers that stopped on an error of their own (their requests "
                           "failed with UNAVAILABLE and the model was reloaded): a bug to "
                           "report", ["model"])
MODEL_LOAD_FAILURES = Counter("recur_model_load_failures_total",
                              "Model versions that failed to load", ["model"])
