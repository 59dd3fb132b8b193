"""`python -m serving`: the gRPC server (recur.v1.Recur, grpc.health.v1, reflection)
plus Prometheus metrics on HTTP.

Start-up order: listen with health NOT_SERVING, load and warm every model,
then flip health to SERVING (per model: the model's name; whole server: "").
The health service "liveness" is SERVING from the start, for liveness probes.
On SIGTERM or SIGINT health turns NOT_SERVING, new RPCs are refused and
in-flight ones get --grace-seconds to finish.

Configuration, highest precedence first: command-line flags; environment
variables RECUR_<FLAG NAME> (e.g. RECUR_PORT=9000, RECUR_MAX_BATCH_SIZE=32); the
--config file (a flat TOML table, e.g. `port = 9000`); the defaults shown below.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
import tomllib
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from model.config import add_config_arguments, config_from_args
from model.startup import warm_up
from protos.recur.v1 import recur_pb2, recur_pb2_grpc
from serving.auth import BearerTokenInterceptor, read_tokens
from serving.batcher import SCHEDULING, BatchingConfig
from serving.config import LimitsConfig, ServerConfig
from serving.malformed import MalformedRequestInterceptor
from serving.registry import ModelRegistry
from serving.servicer import RecurServicer
from serving.task import Task
from serving.tasks import load_tasks

log = logging.getLogger("serving")

SERVICE_NAME = recur_pb2.DESCRIPTOR.services_by_name["Recur"].full_name
CONFIGS = (ServerConfig, BatchingConfig, LimitsConfig)
LIVENESS = "liveness"


async def serve(config: ServerConfig, batching: BatchingConfig, limits: LimitsConfig,
                tasks: dict[str, Task], per_model: dict[str, BatchingConfig] | None = None
                ) -> int:
    health_servicer = health.aio.HealthServicer()
    status = {True: health_pb2.HealthCheckResponse.SERVING,
              False: health_pb2.HealthCheckResponse.NOT_SERVING}
    updates: set[asyncio.Task] = set()

    def on_health(name: str, serving: bool) -> None:
        task = asyncio.get_running_loop().create_task(health_servicer.set(name, status[serving]))
        updates.add(task)
        task.add_done_callback(updates.discard)

    registry = ModelRegistry(config.model_base_path, batching, tasks, limits, on_health,
                             per_model)
    interceptors: list[grpc.aio.ServerInterceptor] = [MalformedRequestInterceptor()]
    if config.auth_tokens_file:
        interceptors.append(BearerTokenInterceptor(read_tokens(config.auth_tokens_file)))
        log.info("bearer-token authentication on (tokens from %s)", config.auth_tokens_file)
    server = grpc.aio.server(interceptors=interceptors, options=channel_options(config),
                             maximum_concurrent_rpcs=config.max_concurrent_rpcs or None)
    recur_pb2_grpc.add_RecurServicer_to_server(RecurServicer(registry, tasks, limits), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    # "liveness" answers SERVING while the event loop runs (a liveness probe must not
    # restart a pod that is merely loading models); "" is readiness: loading done.
    await health_servicer.set(LIVENESS, serving)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, not_serving)

    address = f"{config.host}:{config.port}"
    if config.tls_cert_file:
        port = server.add_secure_port(address, tls_credentials(config))
        log.info("TLS on%s", " with client certificates required (mutual TLS)"
                 if config.tls_client_ca_file else "")
    else:
        port = server.add_insecure_port(address)
    await server.start()
    log.info("gRPC listening on %s:%d (health NOT_SERVING until models are warm)",
             config.host, port)
    probes = await probe_server(config, health_servicer) if config.health_port else None
    try:
        return await run(config, server, health_servicer, registry)
    finally:
        if probes:
            await probes.stop(0)


async def probe_server(config: ServerConfig,
                       health_servicer: health.aio.HealthServicer) -> grpc.aio.Server:
    """A plaintext port with grpc.health.v1 only: Kubernetes' gRPC probes cannot speak
    TLS, so with TLS on they probe this port instead."""
    probes = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
    port = probes.add_insecure_port(f"{config.host}:{config.health_port}")
    await probes.start()
    log.info("health checks (plaintext, grpc.health.v1 only) on %s:%d", config.host, port)
    return probes


async def run(config: ServerConfig, server: grpc.aio.Server,
              health_servicer: health.aio.HealthServicer, registry: ModelRegistry) -> int:
    """Loads the models, serves until SIGTERM/SIGINT, then drains; the exit status."""
    serving = health_pb2.HealthCheckResponse.SERVING
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.metrics_host)
        log.info("Prometheus metrics on http://%s:%d/metrics", config.metrics_host,
                 config.metrics_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    loading = asyncio.create_task(registry.load_all())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():  # SIGTERM while loading: nothing in flight, leave at once
        log.info("stopped while loading models")
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await server.stop(0)
        await registry.close()
        return 0
    if isinstance(loading.exception(), FileNotFoundError):
        log.error("%s", loading.exception())
        await server.stop(0)
        return 1
    loading.result()  # any other start-up failure is a crash, with its traceback
    watching = (asyncio.create_task(registry.watch(config.poll_seconds))
                if config.poll_seconds > 0 else None)
    if not registry.ready and config.wait_for_models and watching:
        log.warning("no model could be loaded under %s yet: NOT_SERVING, looking again "
                    "every %.0f s", config.model_base_path, config.poll_seconds)
        while not (registry.ready or stop.is_set()):
            await asyncio.sleep(min(config.poll_seconds, 1.0))
    if not registry.ready:
        if watching:
            watching.cancel()
        if stop.is_set():
            await server.stop(0)
            await registry.close()
            return 0
        log.error("no model could be loaded under %s; see the errors above (or start with "
                  "--wait-for-models to wait for one)", config.model_base_path)
        await server.stop(0)
        return 1
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, serving)
    log.info("serving %s", ", ".join(f"{n} v{e.served.version}"
                                     for n, e in registry.models.items() if e.served))

    await stopping
    if watching:
        watching.cancel()
    log.info("shutting down: refusing new RPCs, %.0f s for in-flight ones",
             config.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.grace_seconds)
    await registry.close()
    log.info("stopped")
    return 0


def channel_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core settings that bound what clients can hold: message sizes, calls per
    connection, and connection lifetimes. A call whose request message never arrives
    never reaches a handler, so only the connection's age, a dead peer's missed
    keepalive ping, or the server's call limit can end it."""
    no_limit = 2**31 - 1  # INT_MAX (a limit of 0 would allow no call at all)

    def ms(seconds: float) -> int:
        return round(seconds * 1000) if seconds > 0 else no_limit

    streams = config.max_concurrent_streams or no_limit
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", streams),
        ("grpc.max_connection_age_ms", ms(config.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(config.max_connection_age_grace_seconds)),
        ("grpc.max_connection_idle_ms", ms(config.max_connection_idle_seconds)),
        ("grpc.keepalive_time_ms", ms(config.keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


def tls_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())],
        root_certificates=ca, require_client_auth=ca is not None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="",
                        help="TOML file of settings keyed by flag name with underscores, "
                             "e.g. max_batch_size = 32 (default: none)")
    for cls in CONFIGS:
        add_config_arguments(parser.add_argument_group(cls.__name__), cls)
    return parser


def load_configs(args: argparse.Namespace) -> tuple[
        ServerConfig, BatchingConfig, LimitsConfig, dict[str, BatchingConfig]]:
    """Flags > RECUR_* environment variables > --config file > defaults; then each
    `[models.NAME]` table of the file overrides batching settings for that model."""
    file_values = tomllib.loads(Path(args.config).read_text()) if args.config else {}
    per_model = file_values.pop("models", {})
    known = {f for cls in CONFIGS for f in cls.__dataclass_fields__}
    if unknown := sorted(set(file_values) - known):
        raise ValueError(f"{args.config}: unknown settings {unknown}; the settings are the "
                         "flag names with underscores (python -m serving --help)")
    config, batching, limits = (
        config_from_args(cls, args, env_prefix="RECUR_", file_values=file_values)
        for cls in CONFIGS)
    return config, batching, limits, {
        name: model_batching(batching, name, values, args.config)
        for name, values in per_model.items()}


def model_batching(defaults: BatchingConfig, name: str, values: dict,
                   source: str) -> BatchingConfig:
    """`defaults` with one model's `[models.NAME]` overrides, each checked."""
    fields = BatchingConfig.__dataclass_fields__
    if unknown := sorted(set(values) - set(fields)):
        raise ValueError(f"{source}: [models.{name}] has unknown settings {unknown}; a model "
                         f"may set {sorted(fields)}")
    for key, value in values.items():
        wanted = type(getattr(defaults, key))
        if not isinstance(value, wanted) and not (wanted is float and isinstance(value, int)):
            raise ValueError(f"{source}: [models.{name}] {key} = {value!r} is not a valid "
                             f"{wanted.__name__}")
    if values.get("scheduling", "step") not in SCHEDULING:
        raise ValueError(f"{source}: [models.{name}] scheduling must be one of {SCHEDULING}")
    return dataclasses.replace(defaults, **values)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config, batching, limits, per_model = load_configs(args)
        tasks = load_tasks([m.strip() for m in config.task_modules.split(",") if m.strip()])
    except (OSError, ValueError, tomllib.TOMLDecodeError) as error:
        parser.error(str(error))
    if limits.max_batch_entries > batching.max_queue_size:
        parser.error(f"--max-batch-entries ({limits.max_batch_entries}) must not exceed "
                     f"--max-queue-size ({batching.max_queue_size}): such requests could "
                     "never be queued")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")
    if config.tls_client_ca_file and not config.tls_cert_file:
        parser.error("--tls-client-ca-file (mutual TLS) needs --tls-cert-file/--tls-key-file")
    try:
        warm_up(config.intra_op_threads, config.inter_op_threads)
    except RuntimeError:  # TensorFlow already ran in this process: its pools are set
        parser.error("--intra-op-threads and --inter-op-threads need a process whose "
                     "TensorFlow has not started yet: run `python -m serving`")
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The worker thread runs Python between model calls; a shorter GIL switch interval
    # (default 5 ms) keeps the asyncio thread, which answers every RPC, responsive.
    sys.setswitchinterval(0.001)
    log.info("TensorFlow threads: %s intra-op, %s inter-op",
             *(n or "one per core (default)" for n in (config.intra_op_threads,
                                                       config.inter_op_threads)))
    log.info("tasks: %s", ", ".join(f"{name} ({', '.join(task.methods)})"
                                    for name, task in sorted(tasks.items())))
    return asyncio.run(serve(config, batching, limits, tasks, per_model))
