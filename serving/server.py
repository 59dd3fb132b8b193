"""`python -m serving`: the gRPC server (recur.v1.Recur, grpc.health.v1, reflection)
plus Prometheus metrics on HTTP.

Start-up order: listen with health NOT_SERVING, load and warm every model,
then flip health to SERVING (per model: the model's name; whole server: "").
The health service "liveness" is SERVING from the start, for liveness probes.
On SIGTERM or SIGINT health turns NOT_SERVING, new RPCs are refused and
in-flight ones get --grace-seconds to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from protos.recur.v1 import recur_pb2, recur_pb2_grpc
from serving.batcher import BatchingConfig
from serving.config import LimitsConfig, ServerConfig
from serving.registry import ModelRegistry
from serving.servicer import RecurServicer
from training.flags import add_config_arguments, config_from_args

log = logging.getLogger("serving")

SERVICE_NAME = recur_pb2.DESCRIPTOR.services_by_name["Recur"].full_name
CONFIGS = (ServerConfig, BatchingConfig, LimitsConfig)
LIVENESS = "liveness"


async def serve(config: ServerConfig, batching: BatchingConfig, limits: LimitsConfig) -> int:
    health_servicer = health.aio.HealthServicer()
    status = {True: health_pb2.HealthCheckResponse.SERVING,
              False: health_pb2.HealthCheckResponse.NOT_SERVING}
    updates: set[asyncio.Task] = set()

    def on_health(name: str, serving: bool) -> None:
        task = asyncio.get_running_loop().create_task(health_servicer.set(name, status[serving]))
        updates.add(task)
        task.add_done_callback(updates.discard)

    registry = ModelRegistry(config.model_base_path, batching, on_health)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
    ])
    recur_pb2_grpc.add_RecurServicer_to_server(RecurServicer(registry, limits), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    # "liveness" answers SERVING while the event loop runs (a liveness probe must not
    # restart a pod that is merely loading models); "" is readiness: loading done.
    await health_servicer.set(LIVENESS, serving)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, not_serving)

    port = server.add_insecure_port(f"{config.host}:{config.port}")
    await server.start()
    log.info("gRPC listening on %s:%d (health NOT_SERVING until models are warm)",
             config.host, port)
    if config.metrics_port:
        start_http_server(config.metrics_port)
        log.info("Prometheus metrics on http://0.0.0.0:%d/metrics", config.metrics_port)

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
    if not registry.ready:
        log.error("no model could be loaded under %s; see the errors above",
                  config.model_base_path)
        await server.stop(0)
        return 1
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, serving)
    log.info("serving %s", ", ".join(f"{n} v{e.served.version}"
                                     for n, e in registry.models.items() if e.served))

    watching = (asyncio.create_task(registry.watch(config.poll_seconds))
                if config.poll_seconds > 0 else None)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for cls in CONFIGS:
        add_config_arguments(parser.add_argument_group(cls.__name__), cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config, batching, limits = (config_from_args(cls, args) for cls in CONFIGS)
    if limits.max_batch_entries > batching.max_queue_size:
        parser.error(f"--max-batch-entries ({limits.max_batch_entries}) must not exceed "
                     f"--max-queue-size ({batching.max_queue_size}): such requests could "
                     "never be queued")
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(config, batching, limits))
