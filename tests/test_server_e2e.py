"""End to end: a tiny model trained here, exported, served by `python -m serving` on
free localhost ports, called over real gRPC by the project's client, metrics scraped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from model.contract import METADATA_FILE
from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MODEL = "toy-en-fr"


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(?:{{(.*)}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def increase(before: str, after: str, name: str, **labels) -> float:
    """How much `name` (summed over `labels`) grew between two scrapes."""
    return metric(after, name, **labels) - metric(before, name, **labels)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_translate_returns_the_models_nbest(any_server, tiny_export):
    """Either scheduler (the step driver too) gives exactly the in-graph search's answer."""
    target, _, _ = any_server
    report, _ = tiny_export
    texts = ["one two", "seven", "three four nine"]
    with RecurClient(target) as client:
        response = client.translate(texts, MODEL, beam_width=4, num_hypotheses=3,
                                    length_penalty=0.6, max_length=12)
    assert response.model_version == 1
    assert [r.hypotheses[0].text for r in response.results] == [
        "un deux", "sept", "trois quatre neuf"]
    expected = tf.saved_model.load(str(report.export_path)).signatures["translate"](
        texts=tf.constant(texts), beam_width=tf.constant(4), num_hypotheses=tf.constant(3),
        length_penalty=tf.constant(0.6), max_length=tf.constant(12),
        max_length_ratio=tf.constant(2.0))
    for i, nbest in enumerate(response.results):
        assert [h.text for h in nbest.hypotheses] == [
            t.decode() for t in expected["texts"].numpy()[i]]
        np.testing.assert_allclose([h.score for h in nbest.hypotheses],
                                   expected["scores"].numpy()[i], atol=1e-4)
        scores = [h.score for h in nbest.hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert all(h.log_prob <= 0 and h.num_tokens <= 12 for h in nbest.hypotheses)


def test_cli_prints_nbest_with_scores(server):
    target, _, _ = server
    out = subprocess.run([sys.executable, "-m", "serving.client", "--target", target,
                          "translate", "--num-hypotheses", "2", "one two three"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[1] one two three" in out.stdout
    assert len(re.findall(r"^\s+\d\. score +-?\d+\.\d+", out.stdout, re.M)) == 2


def test_concurrent_requests_share_batches(any_server, scheduling):
    target, metrics_url, _ = any_server
    before = scrape(metrics_url)
    with RecurClient(target) as client:
        futures = [client.stub.Translate.future(recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=MODEL), texts=[f"two {w}"],
            options=recur_pb2.DecodeOptions(beam_width=2)), timeout=60)
            for w in ["one", "three", "five", "six", "nine", "ten"] * 4]
        assert all(len(f.result().results) == 1 for f in futures)
    after = scrape(metrics_url)

    def increase(name, **labels):
        return metric(after, name, model=MODEL, **labels) - metric(before, name, model=MODEL,
                                                                   **labels)

    calls = increase("recur_batch_size_count")
    assert calls - increase("recur_batch_size_bucket", le="1.0") > 0, \
        "some model calls should carry more than one of 24 concurrent inputs"
    if scheduling == "request":  # one observation per batch, of its inputs
        assert increase("recur_batch_size_sum") == 24
        assert increase("recur_decode_steps_count") == calls
    else:  # one observation per model call (one or more steps) of the inputs decoding,
        # and one per input of the steps it took
        assert increase("recur_decode_steps_count") == 24
        assert 24 <= increase("recur_batch_size_sum") <= increase("recur_decode_steps_sum")


def test_health_reflection_and_model_listing(server):
    target, _, _ = server
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "recur.v1.Recur", MODEL, "liveness"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert {"recur.v1.Recur", "grpc.health.v1.Health"} <= set(services)
    with RecurClient(target) as client:
        (status,) = client.list_models().models
    assert status.name == MODEL and status.task == "translate"
    assert [v.version for v in status.versions] == [1]
    assert "dev_bleu_beam4" in status.metrics


BAD_REQUESTS = [
    ({"texts": []}, grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    ({"texts": ["one", "  "]}, grpc.StatusCode.INVALID_ARGUMENT, "texts[1]"),
    ({"texts": ["x" * 1_000_000]}, grpc.StatusCode.INVALID_ARGUMENT, "texts[0]"),
    ({"texts": ["one"], "options": {"beam_width": 0}}, grpc.StatusCode.INVALID_ARGUMENT,
     "options.beam_width"),
    ({"texts": ["one"], "options": {"beam_width": 100000}}, grpc.StatusCode.INVALID_ARGUMENT,
     "options.beam_width"),
    ({"texts": ["one"], "options": {"beam_width": 2, "num_hypotheses": 3}},
     grpc.StatusCode.INVALID_ARGUMENT, "options.num_hypotheses"),
    ({"texts": ["one"], "options": {"length_penalty": float("nan")}},
     grpc.StatusCode.INVALID_ARGUMENT, "options.length_penalty"),
    ({"texts": ["one"], "options": {"max_length": -1}}, grpc.StatusCode.INVALID_ARGUMENT,
     "options.max_length"),
    ({"texts": ["one"], "options": {"max_length_ratio": -0.5}},
     grpc.StatusCode.INVALID_ARGUMENT, "options.max_length_ratio"),
    ({"texts": ["one"] * 257}, grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    ({"model": "no-such-model", "texts": ["one"]}, grpc.StatusCode.NOT_FOUND, "no-such-model"),
    ({"model": "", "texts": ["one"]}, grpc.StatusCode.INVALID_ARGUMENT, "model.name"),
    ({"version": 7, "texts": ["one"]}, grpc.StatusCode.NOT_FOUND, "version 7"),
]


@pytest.mark.parametrize(("fields", "code", "named"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_status_and_the_server_keeps_serving(server, fields, code,
                                                                     named):
    target, metrics_url, _ = server
    label = MODEL if fields.get("model", MODEL) == MODEL else "_unknown"
    before = metric(scrape(metrics_url), "recur_requests_total", model=label,
                    method="Translate", code=code.name)
    request = recur_pb2.TranslateRequest(
        model=recur_pb2.ModelSpec(name=fields.get("model", MODEL),
                                  version=fields.get("version", 0)),
        texts=fields["texts"], options=recur_pb2.DecodeOptions(**fields.get("options", {})))
    with RecurClient(target) as client:
        with pytest.raises(grpc.RpcError) as error:
            client.stub.Translate(request, timeout=30)
        assert error.value.code() == code
        assert named in error.value.details()
        assert "Traceback" not in error.value.details()
        assert len(client.translate(["one"], MODEL).results) == 1  # still serving
    after = metric(scrape(metrics_url), "recur_requests_total", model=label,
                   method="Translate", code=code.name)
    assert after - before == 1, "each refused request is counted once, under a bounded label"


def test_an_rpc_of_another_model_kind_fails_its_precondition(server):
    """Caption and GenerateStream have model kinds, but not this model's."""
    target, _, _ = server
    with RecurClient(target) as client:
        with pytest.raises(grpc.RpcError) as error:
            client.stub.Caption(recur_pb2.CaptionRequest(
                model=recur_pb2.ModelSpec(name=MODEL), image=b"\x89PNG"), timeout=10)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "it answers Translate, not Caption" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            list(client.stub.GenerateStream(recur_pb2.GenerateRequest(
                model=recur_pb2.ModelSpec(name=MODEL), prompt="a"), timeout=10))
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "it answers Translate, not GenerateStream" in error.value.details()


def test_metrics_count_requests_and_latency(any_server):
    target, metrics_url, _ = any_server
    before = scrape(metrics_url)
    with RecurClient(target) as client:
        responses = [client.translate(["four five", "six"], MODEL, num_hypotheses=2)
                     for _ in range(3)]
    after = scrape(metrics_url)
    tokens = sum(h.num_tokens for r in responses for nbest in r.results
                 for h in nbest.hypotheses)
    assert metric(after, "recur_generated_tokens_total", model=MODEL) - metric(
        before, "recur_generated_tokens_total", model=MODEL) == tokens
    assert metric(after, "recur_requests_in_flight", method="Translate") == 0
    ok = dict(model=MODEL, method="Translate", code="OK")
    assert metric(after, "recur_requests_total", **ok) - metric(
        before, "recur_requests_total", **ok) == 3
    latency = dict(model=MODEL, method="Translate")
    assert metric(after, "recur_request_duration_seconds_count", **latency) - metric(
        before, "recur_request_duration_seconds_count", **latency) == 3
    for name in ("recur_queue_wait_seconds_count", "recur_inference_duration_seconds_count",
                 "recur_padding_ratio_count", "recur_decode_steps_count"):
        assert metric(after, name, model=MODEL) - metric(before, name, model=MODEL) >= 1
    assert metric(after, "recur_model_version", model=MODEL) == 1


def test_requests_with_different_options_batch_correctly(any_server):
    """Concurrent requests with different decode options share the model (grouped per
    option set, or per beam width in step decoding); each gets exactly the answer it
    gets alone."""
    target, _, _ = any_server
    cases = [(["one two three"], 1, 1), (["four five"], 4, 3), (["six"], 2, 2),
             (["seven eight nine ten"], 4, 1), (["two"], 1, 1), (["ten nine"], 3, 3)] * 3

    def request(texts, beam, n):
        return recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=MODEL), texts=texts,
            options=recur_pb2.DecodeOptions(beam_width=beam, num_hypotheses=n))

    def answer(response):
        return [[(h.text, h.score) for h in r.hypotheses] for r in response.results]

    with RecurClient(target) as client:
        alone = [answer(client.stub.Translate(request(*case), timeout=60)) for case in cases]
        futures = [client.stub.Translate.future(request(*case), timeout=60) for case in cases]
        together = [answer(f.result()) for f in futures]
    for got, expected in zip(together, alone, strict=True):
        assert [t for t, _ in got[0]] == [t for t, _ in expected[0]]
        np.testing.assert_allclose([s for _, s in got[0]], [s for _, s in expected[0]],
                                   atol=1e-4)
    assert [len(a[0]) for a in alone] == [n for _, _, n in cases]


def test_an_xla_export_is_served_with_the_plain_exports_answers(server, tiny_export,
                                                                 tmp_path):
    """The tiny model exported again with --xla-decode: the step scheduler runs its
    compiled decode on every shape the running batch takes, and concurrent requests of
    several sizes and beam widths get the plain export's answers; the log says the
    decode is compiled."""
    from serving.process import ServerProcess
    from training.driver import train
    from training.translate import TASK, TranslateConfig

    report, _ = tiny_export
    config = json.loads((report.export_path / METADATA_FILE).read_text())["config"]
    # A copy of the run (weights and vocabulary): the session's export stays untouched.
    run = shutil.copytree(Path(config["run_dir"]) / config["model_name"],
                          tmp_path / "runs" / config["model_name"])
    # (its evaluation on 4 pairs: each batch shape of it would compile once more)
    train(TASK, TranslateConfig(**{**config, "xla_decode": True, "epochs": 0,
                                   "max_eval_examples": 4, "run_dir": str(tmp_path / "runs"),
                                   "init_weights": str(run / "model.weights.h5"),
                                   "export_base": str(tmp_path / "exports")}))
    process = ServerProcess(tmp_path / "exports", "--poll-seconds", "0")
    try:
        process.wait_until_serving()
        requests = [recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=MODEL), texts=texts,
            options=recur_pb2.DecodeOptions(beam_width=beam, num_hypotheses=2))
            for texts in (["one two"], ["seven eight nine ten", "three"],
                          ["five six seven", "nine", "two two two two two two"])
            for beam in (2, 4)]
        answers = {}
        for target in (process.target, server[0]):
            with RecurClient(target) as client:
                futures = [client.stub.Translate.future(r, timeout=120) for r in requests]
                answers[target] = [[[(h.text, h.score) for h in n.hypotheses]
                                    for n in f.result().results] for f in futures]
        for compiled, plain in zip(answers[process.target], answers[server[0]], strict=True):
            assert [[t for t, _ in n] for n in compiled] == [[t for t, _ in n] for n in plain]
            np.testing.assert_allclose([[s for _, s in n] for n in compiled],
                                       [[s for _, s in n] for n in plain], atol=1e-4)
        assert "decodes compiled with XLA" in process.log_path.read_text()
    finally:
        assert process.stop() == 0, process.log_path.read_text()
