"""Deadlines and cancellation: a request that can no longer be answered costs no inference."""

from __future__ import annotations

import time

import grpc
import pytest

from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from serving.process import ServerProcess
from tests.test_server_e2e import increase, metric, scrape

pytestmark = pytest.mark.slow

MODEL = "toy-en-fr"


def test_expired_and_cancelled_requests_cost_no_inference(tiny_export, tmp_path):
    _, base = tiny_export
    # Request-level batches wait 2 s to fill when requests come close together, so a
    # request with a shorter deadline that follows another expires in the queue. (A
    # request after a quiet spell runs at once; step scheduling starts at once, its queue
    # is covered in test_batcher.) Set for this model only, through the config file: this
    # checks that path too.
    config = tmp_path / "recur.toml"
    config.write_text(f'[models.{MODEL}]\nscheduling = "request"\nbatch_timeout_ms = 2000\n'
                      "max_batch_size = 256\n")
    server = ServerProcess(base, "--poll-seconds", "0", "--config", str(config))
    server.wait_until_serving()
    try:
        with RecurClient(server.target, timeout=30) as client:
            client.translate(["first"], MODEL)  # alone: at once; those after it wait
        before = scrape(server.metrics_url)
        with RecurClient(server.target, timeout=0.3) as client:
            with pytest.raises(grpc.RpcError) as error:
                client.translate(["one two"], MODEL)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with RecurClient(server.target, timeout=30) as client:
            call = client.stub.Translate.future(recur_pb2.TranslateRequest(
                model=recur_pb2.ModelSpec(name=MODEL), texts=["three"]), timeout=30)
            time.sleep(0.3)
            call.cancel()
        time.sleep(2.5)  # past the batch window: the batcher has looked at the queue
        after = scrape(server.metrics_url)

        def delta(name, **labels):
            return increase(before, after, name, **labels)

        assert delta("recur_batcher_dropped_total", model=MODEL) == 2
        assert delta("recur_batch_size_count", model=MODEL) == 0, "no inference was run"
        assert delta("recur_requests_total", model=MODEL, code="DEADLINE_EXCEEDED") == 1
        assert delta("recur_requests_total", model=MODEL, code="CANCELLED") == 1
        assert metric(after, "recur_queue_depth", model=MODEL) == 0
    finally:
        assert server.stop() == 0

