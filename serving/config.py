"""Server configuration: typed dataclasses, one `python -m serving` flag per field."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import option


@dataclass(frozen=True)
class ServerConfig:
    model_base_path: str = option("exports", "directory holding MODEL/VERSION/ exports")
    poll_seconds: float = option(5.0, "how often to look for new model versions and new or "
                                      "removed models (0 = load once at start)")
    wait_for_models: bool = option(False, "when no model can be loaded at start, keep "
                                          "running NOT_SERVING and keep polling until one "
                                          "can (for Kubernetes, where the first export may "
                                          "arrive after the servers) instead of exiting 1; "
                                          "needs --poll-seconds > 0")
    host: str = option("[::]", "address to listen on")
    port: int = option(8500, "gRPC port")
    health_port: int = option(0, "a second, plaintext port serving grpc.health.v1 only, for "
                                 "probes that cannot speak TLS (Kubernetes' gRPC probes); "
                                 "0 = none")
    metrics_port: int = option(8501, "Prometheus /metrics HTTP port (0 = off)")
    metrics_host: str = option("0.0.0.0", "address the metrics port listens on (127.0.0.1 "
                                          "keeps it to scrapers on the same host or pod)")
    max_message_bytes: int = option(4 * 1024 * 1024, "largest gRPC message accepted or sent")
    max_concurrent_streams: int = option(
        1000, "most calls one client connection may have open at once (HTTP/2 streams; "
              "0 = no limit). Calls beyond it fail with UNAVAILABLE (the server refuses the "
              "stream; gRPC clients do not reliably queue them), so keep it above what "
              "one client or proxy sends at once")
    max_concurrent_rpcs: int = option(2000, "most calls the server holds at once, all "
                                            "connections together; further calls get "
                                            "RESOURCE_EXHAUSTED at once (0 = no limit)")
    max_connection_age_seconds: float = option(
        300.0, "a connection older than this is asked to close (HTTP/2 GOAWAY): clients "
               "reconnect, which spreads them over new replicas, and a call whose request "
               "never arrives cannot outlive age + grace (0 = no limit)")
    max_connection_age_grace_seconds: float = option(
        60.0, "time the calls of an aged connection get to finish before it is closed")
    max_connection_idle_seconds: float = option(900.0, "a connection with no call for this "
                                                       "long is closed (0 = no limit)")
    keepalive_seconds: float = option(120.0, "a connection silent this long is pinged; one "
                                             "whose client does not answer within 20 s is "
                                             "closed, freeing what its calls held")
    grace_seconds: float = option(10.0, "on SIGTERM/SIGINT, time given to in-flight requests")
    tls_cert_file: str = option("", "PEM server certificate (chain); with --tls-key-file "
                                    "turns TLS on")
    tls_key_file: str = option("", "PEM private key of --tls-cert-file")
    tls_client_ca_file: str = option("", "PEM CA bundle: clients must present a certificate "
                                         "it signed (mutual TLS)")
    auth_tokens_file: str = option("", "file of accepted bearer tokens, one per line: every "
                                       "RPC but health checks then needs 'authorization: "
                                       "Bearer <token>'")
    reflection: bool = option(True, "serve gRPC reflection (open without a bearer token, "
                                    "like health: it describes only the public protos)")
    task_modules: str = option("", "comma-separated Python modules, each defining TASK (a "
                                   "serving.task.Task), for model kinds recur does not ship")
    intra_op_threads: int = option(0, "threads one TensorFlow op may use (0 = TensorFlow's "
                                      "default, one per core). 1 can suit small models on "
                                      "few cores, whose ops are too small to split: the "
                                      "encoder of joining inputs and the running decode "
                                      "then share the cores instead of oversubscribing "
                                      "them (measured in the README: the quick captioner "
                                      "served faster, the quick translator slower)")
    inter_op_threads: int = option(0, "threads running independent TensorFlow ops at once "
                                      "(0 = TensorFlow's default, one per core)")
    log_level: str = option("INFO", "Python logging level")


@dataclass(frozen=True)
class LimitsConfig:
    """Per-request limits; a request beyond one gets INVALID_ARGUMENT naming the field."""

    max_batch_entries: int = option(256, "most texts in one request")
    max_text_bytes: int = option(4096, "longest text in bytes (UTF-8)")
    max_tag_tokens: int = option(8192, "most tokens in one Tag request, all texts together")
    max_beam_width: int = option(16, "largest options.beam_width")
    max_output_length: int = option(512, "largest options.max_length")
    max_chars: int = option(4096, "largest max_chars of a Generate request")
    max_image_bytes: int = option(2 * 1024 * 1024, "largest encoded image of a Caption "
                                                   "request, in bytes")
    max_image_pixels: int = option(1024 * 1024, "most pixels (width x height; a GIF's "
                                                "frames together) of a Caption request's "
                                                "image, read from its headers before it is "
                                                "decoded")
    default_beam_width: int = option(4, "beam width when a request sets none")
    default_length_penalty: float = option(0.6, "GNMT length penalty when a request sets none")
