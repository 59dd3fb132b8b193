"""Server configuration: typed dataclasses, one `python -m serving` flag per field."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import option


@dataclass(frozen=True)
class ServerConfig:
    model_base_path: str = option("exports", "directory holding MODEL/VERSION/ exports")
    poll_seconds: float = option(5.0, "how often to look for new model versions and new or "
                                      "removed models (0 = load once at start)")
    host: str = option("[::]", "address to listen on")
    port: int = option(8500, "gRPC port")
    metrics_port: int = option(8501, "Prometheus /metrics HTTP port (0 = off)")
    max_message_bytes: int = option(4 * 1024 * 1024, "largest gRPC message accepted or sent")
    grace_seconds: float = option(10.0, "on SIGTERM/SIGINT, time given to in-flight requests")
    tls_cert_file: str = option("", "PEM server certificate (chain); with --tls-key-file "
                                    "turns TLS on")
    tls_key_file: str = option("", "PEM private key of --tls-cert-file")
    tls_client_ca_file: str = option("", "PEM CA bundle: clients must present a certificate "
                                         "it signed (mutual TLS)")
    auth_tokens_file: str = option("", "file of accepted bearer tokens, one per line: every "
                                       "RPC but health checks then needs 'authorization: "
                                       "Bearer <token>'")
    task_modules: str = option("", "comma-separated Python modules, each defining TASK (a "
                                   "serving.task.Task), for model kinds recur does not ship")
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
