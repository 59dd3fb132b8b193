"""Model versions coming and going under a running server: hot reload under load, broken
exports next to good ones, and SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import grpc
import prometheus_client
import pytest
from grpc_health.v1 import health_pb2

from protos.recur.v1 import recur_pb2
from serving.batcher import BatcherClosed, BatchingConfig
from serving.client import RecurClient
from serving.config import LimitsConfig
from serving.process import ServerProcess
from serving.registry import ModelRegistry
from serving.tasks import load_tasks
from tests.test_server_e2e import metric, scrape

pytestmark = pytest.mark.slow

MODEL = "toy-en-fr"
State = recur_pb2.ModelVersionStatus.State


def publish(base: Path, source: Path, version: int) -> None:
    """Copies an export in as a new version the way the exporter does: stage, then rename."""
    staging = base / MODEL / f".staging-{version}"
    shutil.copytree(source, staging)
    os.rename(staging, base / MODEL / str(version))


def versions(client: RecurClient) -> dict[int, int]:
    (status,) = [m for m in client.list_models().models if m.name == MODEL]
    return {v.version: v.state for v in status.versions}


def wait_for(condition, seconds: float = 60.0) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up, "timed out"
        time.sleep(0.2)


@pytest.fixture
def base(tiny_export, tmp_path) -> Path:
    """A private copy of the tiny export base (version 1), plus a broken model beside it."""
    _, exports = tiny_export
    base = tmp_path / "exports"
    shutil.copytree(exports / MODEL / "1", base / MODEL / "1")
    broken = base / "broken-model" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    (broken / "recur.json").write_text('{"task": "translate"}')
    for name, change in (("future-model", {"contract_version": 2}),
                         ("poetry-model", {"task": "poetry"})):
        shutil.copytree(exports / MODEL / "1", base / name / "1")
        meta = json.loads((base / name / "1" / "recur.json").read_text())
        (base / name / "1" / "recur.json").write_text(json.dumps({**meta, **change}))
    return base


def test_hot_reload_under_load_fails_no_request(base):
    server = ServerProcess(base, "--poll-seconds", "0.3")
    server.wait_until_serving()
    seen: dict[int, int] = {}
    errors: list[str] = []
    stop = threading.Event()

    def load():
        with RecurClient(server.target, timeout=30) as client:
            for _ in range(2000):  # bounded; stopped long before
                if stop.is_set():
                    return
                try:
                    response = client.translate(["one two three"], MODEL, beam_width=2)
                    seen[response.model_version] = seen.get(response.model_version, 0) + 1
                    assert response.results[0].hypotheses[0].text == "un deux trois"
                except (grpc.RpcError, AssertionError) as error:
                    errors.append(repr(error))

    try:
        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        wait_for(lambda: seen.get(1, 0) > 20)
        publish(base, base / MODEL / "1", 2)
        wait_for(lambda: seen.get(2, 0) > 20)
        stop.set()
        for thread in threads:
            thread.join(60)
        with RecurClient(server.target) as client:
            assert versions(client) == {2: State.AVAILABLE}
        assert metric(scrape(server.metrics_url), "recur_model_version", model=MODEL) == 2
    finally:
        stop.set()
        assert server.stop() == 0
    assert errors == []


def test_broken_exports_are_reported_and_the_good_version_keeps_serving(base):
    server = ServerProcess(base, "--poll-seconds", "0.3")
    server.wait_until_serving()
    try:
        # every model's failure counter has a sample before its first failure, so that an
        # increase() alert sees the first one
        assert f'recur_model_load_failures_total{{model="{MODEL}"}} 0.0' in scrape(
            server.metrics_url).splitlines()
        with RecurClient(server.target) as client:
            statuses = {m.name: m for m in client.list_models().models}
            assert statuses["broken-model"].versions[0].state == State.FAILED
            # exports of another contract version or of a task this server lacks: FAILED,
            # saying what is wrong
            (future,) = statuses["future-model"].versions
            assert future.state == State.FAILED and "contract_version 2" in future.error
            assert "re-export" in future.error
            (poetry,) = statuses["poetry-model"].versions
            assert poetry.state == State.FAILED and "names task 'poetry'" in poetry.error
            assert "--task-modules" in poetry.error
            assert "broken-model" in statuses and statuses[MODEL].versions[0].version == 1
            # a half-written version never becomes visible; a corrupt one fails to load
            (base / MODEL / ".staging-7").mkdir()
            corrupt = base / MODEL / ".staging-3"
            shutil.copytree(base / MODEL / "1", corrupt)
            (corrupt / "saved_model.pb").write_bytes(b"\x00 truncated")
            os.rename(corrupt, base / MODEL / "3")
            wait_for(lambda: versions(client).get(3) == State.FAILED)
            assert versions(client) == {1: State.AVAILABLE, 3: State.FAILED}
            response = client.translate(["four five"], MODEL)
            assert response.model_version == 1
            assert response.results[0].hypotheses[0].text == "quatre cinq"
        text = scrape(server.metrics_url)
        assert metric(text, "recur_model_load_failures_total", model=MODEL) == 1
        for name in ("broken-model", "future-model", "poetry-model"):
            assert metric(text, "recur_model_load_failures_total", model=name) == 1
    finally:
        assert server.stop() == 0


def test_restart_beside_a_corrupt_newest_version_serves_the_previous_one_and_rollback(
        base):
    # What a Kubernetes pod meets when it restarts after a bad export was published:
    # it must serve version 1, not crash-loop.
    corrupt = base / MODEL / "2"
    shutil.copytree(base / MODEL / "1", corrupt)
    (corrupt / "saved_model.pb").write_bytes((corrupt / "saved_model.pb").read_bytes()[:200])
    server = ServerProcess(base, "--poll-seconds", "0.3")
    server.wait_until_serving()
    try:
        with RecurClient(server.target) as client:
            (status,) = [m for m in client.list_models().models if m.name == MODEL]
            states = {v.version: (v.state, v.error) for v in status.versions}
            assert states[1] == (State.AVAILABLE, "")
            assert states[2][0] == State.FAILED and states[2][1], states
            response = client.translate(["four five"], MODEL)
            assert response.model_version == 1
            assert response.results[0].hypotheses[0].text == "quatre cinq"
            publish(base, base / MODEL / "1", 3)  # a good newer version still replaces it
            wait_for(lambda: versions(client).get(3) == State.AVAILABLE)
            assert client.translate(["four five"], MODEL).model_version == 3
            # rolling back = removing the version: the newest good one left serves again
            os.rename(base / MODEL / "3", base / MODEL / ".rolled-back-3")
            wait_for(lambda: versions(client).get(1) == State.AVAILABLE)
            assert versions(client) == {1: State.AVAILABLE, 2: State.FAILED}
            assert client.translate(["four five"], MODEL).model_version == 1
        assert metric(scrape(server.metrics_url), "recur_model_load_failures_total",
                      model=MODEL) == 1
    finally:
        assert server.stop() == 0
    assert "failed to load toy-en-fr version 2" in server.log_path.read_text()


def test_a_server_started_before_any_model_waits_for_one(base, tmp_path):
    empty = tmp_path / "empty"
    (empty / MODEL).mkdir(parents=True)  # a volume the training Job has not written yet
    impatient = ServerProcess(empty, "--poll-seconds", "0.3")  # by default: exit, say why
    assert impatient.process.wait(120) == 1
    assert "--wait-for-models" in impatient.log_path.read_text()
    server = ServerProcess(empty, "--poll-seconds", "0.3", "--wait-for-models")
    try:
        with RecurClient(server.target) as client:
            wait_for(lambda: "looking again every" in server.log_path.read_text())
            time.sleep(1)
            assert server.process.poll() is None  # still running, not ready
            ready = client.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            alive = client.health.Check(health_pb2.HealthCheckRequest(service="liveness"),
                                        timeout=10)
            assert ready.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert alive.status == health_pb2.HealthCheckResponse.SERVING
            publish(empty, base / MODEL / "1", 1)
            client.wait_until_serving(120)
            assert client.translate(["four five"], MODEL).results[0].hypotheses[0].text == (
                "quatre cinq")
    finally:
        assert server.stop() == 0


def test_sigterm_lets_in_flight_requests_finish(base):
    # A grace period long enough for this load even on a busy CI machine: every request
    # accepted before SIGTERM must finish; any that arrives after it is refused.
    server = ServerProcess(base, "--poll-seconds", "0", "--grace-seconds", "60")
    server.wait_until_serving()
    with RecurClient(server.target, timeout=60) as client:
        futures = [client.stub.Translate.future(recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=MODEL), texts=["six seven eight nine"] * 64,
            options=recur_pb2.DecodeOptions(beam_width=16, num_hypotheses=1)), timeout=60)
            for _ in range(8)]
        in_flight = 0.0
        for _ in range(200):  # until the server reports requests in flight
            in_flight = metric(scrape(server.metrics_url), "recur_requests_in_flight",
                               method="Translate")
            if in_flight:
                break
            time.sleep(0.02)
        server.process.terminate()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result().results[0].hypotheses[0].text)
            except grpc.RpcError as error:
                outcomes.append(error.code())
    assert server.process.wait(90) == 0
    done = [o for o in outcomes if o == "six sept huit neuf"]
    assert in_flight >= 1
    assert len(done) >= in_flight, "requests in flight at SIGTERM must complete"
    # Calls that reached the server but no handler yet when it began to stop are ended by
    # gRPC itself (CANCELLED); calls after that are refused (UNAVAILABLE). None is lost.
    refused = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert set(outcomes) <= {"six sept huit neuf", *refused}, outcomes


def test_loaded_models_are_kept_out_of_garbage_collection_and_a_replaced_one_is_freed(
        tiny_export, tmp_path):
    """A loaded export is hundreds of thousands of Python objects; a full garbage
    collection scanning them holds the GIL for a quarter of a second while every request
    waits. The registry exempts them (gc.freeze) after each load, and must still free a
    version it replaced."""
    _, exports = tiny_export
    base = tmp_path / "exports"
    shutil.copytree(exports / MODEL / "1", base / MODEL / "1")

    async def main():
        registry = ModelRegistry(base, BatchingConfig(), load_tasks(), LimitsConfig())
        await registry.load_all()
        try:
            first = weakref.ref(registry.get(MODEL).saved_model)
            frozen = gc.get_freeze_count()
            publish(base, exports / MODEL / "1", 2)
            await registry.refresh()
            assert registry.get(MODEL).version == 2
        finally:
            await registry.close()  # waits for version 1's drain too
        await asyncio.sleep(0)  # the drains' done callbacks
        return first, frozen

    first, frozen = asyncio.run(main())
    assert frozen > 10_000, "the loaded model is still scanned by every full collection"
    assert first() is None, "version 1 was never freed"


def test_a_model_whose_batcher_fails_turns_not_serving_and_is_reloaded(tiny_export, tmp_path):
    """If a model's batcher stops on an error of its own (a bug), its requests fail at once
    (UNAVAILABLE), its health turns NOT_SERVING, and the same version is loaded again with
    a new batcher that answers: before, the model refused every request until a restart
    while its health said SERVING."""
    _, exports = tiny_export
    base = tmp_path / "exports"
    shutil.copytree(exports / MODEL / "1", base / MODEL / "1")
    failures = batcher_failures()

    async def main():
        health: list[tuple[str, bool]] = []
        registry = ModelRegistry(base, BatchingConfig(scheduling="request"), load_tasks(),
                                 LimitsConfig(), lambda name, up: health.append((name, up)))
        await registry.load_all()
        try:
            broken = registry.get(MODEL)
            sample = load_tasks()[broken.task].warm_up(broken.metadata, LimitsConfig())
            with pytest.raises(BatcherClosed, match="internal error"):
                # a row the batcher cannot size for batching: its loop ends on the error
                await broken.batcher.submit(sample.key, [object()])
            for _ in range(600):
                if registry.get(MODEL) is not broken:
                    break
                await asyncio.sleep(0.1)
            answers = await registry.get(MODEL).batcher.submit(sample.key, sample.merged())
        finally:
            await registry.close()
        return health, broken, answers

    health, broken, answers = asyncio.run(main())
    assert broken.batcher.failed
    assert health == [(MODEL, True), (MODEL, False), (MODEL, True)]
    assert len(answers) == 1 and answers[0]
    assert batcher_failures() == failures + 1


def batcher_failures() -> float:
    """This process' count (the registry above runs in it)."""
    return prometheus_client.REGISTRY.get_sample_value("recur_batcher_failures_total",
                                                       {"model": MODEL}) or 0.0
