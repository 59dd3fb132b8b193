"""The task seam is real: a model kind that exists only in the tests (`tests/reverse/`)
is trained by the shared driver, exported through the same contract and served over
real gRPC by both schedulers, and no line of the engine names it."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf

from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from serving.process import ServerProcess
from tests.conftest import ROOT
from tests.reverse.contract import MAX_CHARS, REVERSE
from tests.reverse.training_task import random_strings
from tests.test_server_e2e import increase, metric, scrape

pytestmark = pytest.mark.slow

MODEL = "reverse"
TRANSLATOR = "toy-en-fr"
TASK_MODULE = "tests.reverse.serving_task"
ENGINE = ("serving", "training", "model", "protos")


@pytest.fixture(scope="module")
def reverse_export(tmp_path_factory):
    """Trains the reverse task with the shared driver (about 20 s); (report, base)."""
    from tests.reverse.training_task import TASK, ReverseConfig
    from training.driver import train

    base = tmp_path_factory.mktemp("reverse-exports")
    config = ReverseConfig(embedding_dim=16, units=64, dropout=0.0, batch_size=32, epochs=8,
                           learning_rate=1e-2, patience=0, export_base=str(base),
                           run_dir=str(tmp_path_factory.mktemp("reverse-runs")))
    return train(TASK, config), base


@pytest.fixture(scope="module", params=["step", "request"])
def reverse_server(request, reverse_export, tiny_export):
    """The reverse model and, beside it, the tiny translator: two tasks, one server."""
    _, base = reverse_export
    _, translation_base = tiny_export
    if not (base / TRANSLATOR).exists():
        shutil.copytree(translation_base / TRANSLATOR, base / TRANSLATOR)
    process = ServerProcess(base, "--poll-seconds", "0", "--scheduling", request.param,
                            "--task-modules", TASK_MODULE)
    process.wait_until_serving()
    yield request.param, process
    assert process.stop() == 0, process.log_path.read_text()


def generate_request(prompt: str, **options) -> recur_pb2.GenerateRequest:
    return recur_pb2.GenerateRequest(model=recur_pb2.ModelSpec(name=MODEL), prompt=prompt,
                                     **options)


def test_the_engine_never_names_the_test_task():
    pattern = re.compile(r"\breverse\b|tests\.reverse", re.IGNORECASE)
    for package in ENGINE:
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                assert not pattern.search(line), f"{path.relative_to(ROOT)}:{number}: {line}"


def test_the_shared_driver_trains_and_exports_it_through_the_contract(reverse_export):
    report, _ = reverse_export
    assert report.metrics["dev_exact_match"] >= 0.95, report.metrics
    loaded = tf.saved_model.load(str(report.export_path))
    REVERSE.check(loaded)  # signature, begin's inputs: as declared


def test_translate_answers_the_same_under_both_schedulers(reverse_server, reverse_export):
    _, server = reverse_server
    report, _ = reverse_export
    texts = random_strings(40, seed=99)
    with RecurClient(server.target) as client:
        response = client.translate(texts, MODEL, beam_width=3, num_hypotheses=2)
    best = [r.hypotheses[0].text for r in response.results]
    assert sum(b == t[::-1] for b, t in zip(best, texts, strict=True)) >= 38, best
    signature = tf.saved_model.load(str(report.export_path)).signatures["reverse"]
    expected = REVERSE.signature.call(signature, [
        dict(texts=t, beam_width=3, num_hypotheses=2, length_penalty=0.6, max_length=MAX_CHARS,
             temperature=0.0, top_k=0, top_p=1.0, seed=0) for t in texts])
    for i, nbest in enumerate(response.results):
        assert [h.text for h in nbest.hypotheses] == [t.decode() for t in expected["texts"][i]]


def test_a_seeded_stream_and_a_unary_call_agree(reverse_server):
    """Sampling through the server: the same seed gives the same text streamed or not,
    under either scheduler. (A stream growing as it is decoded is tested on the char LM,
    `tests/test_charlm.py`: these few characters decode in a millisecond, and may come
    in one piece of news.)"""
    scheduling, server = reverse_server
    prompts = ["abcdefg", "hgfedcb", "aabbcc"]
    with RecurClient(server.target) as client:
        for prompt in prompts:
            options = dict(seed=7, temperature=0.8, top_p=0.95)
            chunks = list(client.stub.GenerateStream(generate_request(prompt, **options),
                                                     timeout=30))
            unary = client.stub.Generate(generate_request(prompt, **options), timeout=30)
            streamed = "".join(c.text for c in chunks)
            assert streamed == unary.text
            assert chunks[-1].done and not any(c.done for c in chunks[:-1])
            assert all(c.model_version == 1 for c in chunks)
            if scheduling == "request":
                assert len(chunks) == 1  # all at the end
        beam = client.stub.Generate(generate_request("abcd", beam_width=2), timeout=30)
        assert beam.text == "dcba" and beam.log_prob < 0


def test_concurrent_seeded_requests_get_the_answer_they_get_alone(reverse_server):
    """Inputs with their own seeds join a running decode at different steps."""
    _, server = reverse_server
    cases = [(p, seed) for p in ("abcdefg", "ba", "hhhh", "cdefgh") for seed in (1, 2)]

    def ask(client, prompt, seed):
        return client.stub.Generate(generate_request(prompt, seed=seed, temperature=1.5),
                                    timeout=30).text

    with RecurClient(server.target) as client:
        alone = [ask(client, *case) for case in cases]
        results: dict[int, str] = {}
        threads = [threading.Thread(target=lambda i=i, c=c: results.__setitem__(
            i, ask(client, *c))) for i, c in enumerate(cases * 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [results[i] for i in range(len(cases) * 3)] == alone * 3


def test_a_cancelled_stream_leaves_and_the_server_goes_on(reverse_server):
    _, server = reverse_server
    with RecurClient(server.target) as client:
        call = client.stub.GenerateStream(generate_request("abcdefg", seed=3, max_chars=500,
                                                           temperature=5.0), timeout=30)
        call.cancel()
        with pytest.raises(grpc.RpcError) as error:
            list(call)
        assert error.value.code() == grpc.StatusCode.CANCELLED
        assert client.stub.Generate(generate_request("abc", beam_width=1), timeout=30).text \
            == "cba"
    for _ in range(50):  # the handler unwinds shortly after the client left
        text = scrape(server.metrics_url)
        if metric(text, "recur_requests_in_flight", method="GenerateStream") == 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the cancelled stream is still in flight")


def test_a_stream_cancelled_while_queued_costs_no_inference(reverse_export, tmp_path):
    """Request batches wait 2 s to fill here when requests come close together, so the
    stream that follows another request is cancelled in the queue."""
    _, base = reverse_export
    server = ServerProcess(base, "--poll-seconds", "0", "--task-modules", TASK_MODULE,
                           "--scheduling", "request", "--batch-timeout-ms", "2000")
    server.wait_until_serving()
    try:
        with RecurClient(server.target) as client:  # alone: at once; those after it wait
            client.stub.Generate(generate_request("ab", beam_width=1), timeout=30)
        before = scrape(server.metrics_url)
        with RecurClient(server.target) as client:
            call = client.stub.GenerateStream(generate_request("abcd", seed=1), timeout=30)
            time.sleep(0.3)
            call.cancel()
        time.sleep(2.5)  # past the batch window: the batcher has looked at the queue
        after = scrape(server.metrics_url)

        def delta(name, **labels):
            return increase(before, after, name, **labels)

        assert delta("recur_requests_total", model=MODEL, method="GenerateStream",
                     code="CANCELLED") == 1
        assert delta("recur_batcher_dropped_total", model=MODEL) == 1
        assert delta("recur_batch_size_count", model=MODEL) == 0, "no inference was run"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(("options", "named"), [
    ({"temperature": 0.0}, "temperature"), ({"temperature": 11.0}, "temperature"),
    ({"top_k": -1}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"max_chars": 0}, "max_chars"), ({"beam_width": 99}, "beam_width")])
def test_bad_sampling_options_name_the_field(reverse_server, options, named):
    _, server = reverse_server
    with RecurClient(server.target) as client, pytest.raises(grpc.RpcError) as error:
        list(client.stub.GenerateStream(generate_request("abc", **options), timeout=30))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in error.value.details()


def test_each_rpc_goes_to_the_task_of_the_model_it_names(reverse_server):
    _, server = reverse_server
    with RecurClient(server.target) as client:
        assert client.translate(["one two"], TRANSLATOR).results[0].hypotheses[0].text \
            == "un deux"
        with pytest.raises(grpc.RpcError) as error:
            client.stub.Generate(recur_pb2.GenerateRequest(
                model=recur_pb2.ModelSpec(name=TRANSLATOR), prompt="one"), timeout=30)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "'translate' model: it answers Translate, not Generate" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:  # the captioner's RPC, not this task's
            client.stub.Caption(recur_pb2.CaptionRequest(model=recur_pb2.ModelSpec(name=MODEL),
                                                         image=b"abc"), timeout=30)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "it answers Translate, Generate, GenerateStream, not Caption" in \
            error.value.details()
        statuses = {m.name: m for m in client.list_models().models}
    assert statuses[MODEL].task == "reverse" and statuses[MODEL].labels["alphabet"]
    assert statuses[TRANSLATOR].task == "translate"
    log = Path(server.log_path).read_text()
    assert ("tasks: caption (Caption), charlm (Generate, GenerateStream), reverse (Translate, "
            "Generate, GenerateStream), tag (Tag), translate (Translate)") in log
