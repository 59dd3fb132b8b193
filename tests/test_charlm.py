"""The character LM as users meet it: trained by the shared driver with truncated BPTT,
exported with `generate` and `score`, and served by Generate / GenerateStream over real
gRPC."""

from __future__ import annotations

import csv
import itertools
import math
import random
import threading

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf

from model.char_lm import CharLM, CharLMConfig
from model.characters import Characters
from model.contract import GENERATE, SCORE
from model.generator import Generator
from model.tokenizer import BOS_ID
from protos.recur.v1 import recur_pb2
from serving import client as client_cli
from serving.client import RecurClient
from serving.process import ServerProcess
from training.charlm import CarriedState
from training.pipeline import line_starts, stream_batches

pytestmark = pytest.mark.slow

MODEL = "toy-charlm"
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "hat"]


def toy_text(lines: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "\n"
                   for _ in range(lines))


@pytest.fixture(scope="module")
def charlm_export(tmp_path_factory):
    """A tiny LSTM LM trained on toy sentences (about 15 s); (report, export base)."""
    from training.charlm import TASK, CharLMTrainingConfig
    from training.driver import train

    corpus = tmp_path_factory.mktemp("charlm-corpus") / "toy.txt"
    corpus.write_text(toy_text(3000, seed=0), encoding="utf-8")
    base = tmp_path_factory.mktemp("charlm-exports")
    config = CharLMTrainingConfig(
        train_file=str(corpus), model_name=MODEL, embedding_dim=16, units=48, dropout=0.0,
        batch_size=8, chunk_length=32, chunks=4, epochs=3, learning_rate=1e-2, patience=0,
        export_base=str(base), run_dir=str(tmp_path_factory.mktemp("charlm-runs")))
    return train(TASK, config), base, config


@pytest.fixture(scope="module")
def functions(charlm_export):
    report, _, _ = charlm_export
    loaded = tf.saved_model.load(str(report.export_path))
    generate = loaded.signatures[GENERATE.signature.name]
    score = loaded.signatures[SCORE.name]

    def gen(prompts, seed=1, **options):
        options = {"beam_width": 1, "num_hypotheses": 1, "max_length": 40,
                   "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": seed, **options}
        out = GENERATE.signature.call(generate, [{"texts": p, **options} for p in prompts])
        return ([t.decode("utf-8") for t in out["texts"][:, 0]], out["log_probs"][:, 0],
                out["num_tokens"][:, 0])

    def log_prob(texts):
        return SCORE.call(score, [{"texts": t} for t in texts])["log_probs"]

    return gen, log_prob


def test_training_learns_the_text_and_logs_each_epoch(charlm_export):
    report, _, config = charlm_export
    # 16 characters: 4 bits each at uniform; the toy text is far more predictable.
    assert report.metrics["dev_bpc"] < 1.5, report.metrics
    assert report.metrics["test_bpc"] < 1.5, report.metrics
    with open(f"{config.run_dir}/{MODEL}/history.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    seconds = [float(r["train_seconds"]) for r in rows]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert float(rows[-1]["val_bpc"]) < float(rows[0]["bpc"])
    # The dev figure during training (lanes carrying state) and the export's (pieces,
    # each from the beginning) measure the same text the same way, nearly.
    assert abs(float(rows[-1]["val_bpc"]) - report.metrics["dev_bpc"]) < 0.05


def test_a_time_budget_ends_training_within_the_epoch_it_runs_out_in(tmp_path):
    rows = toy_run(tmp_path, "budget", epochs=50, time_budget=0.02)
    assert len(rows) == 1, rows  # of 50 asked for


def toy_run(tmp_path, name: str, **options) -> list[dict[str, str]]:
    """Trains a tiny LM on toy text with the driver; its history.csv rows."""
    from training.charlm import TASK, CharLMTrainingConfig
    from training.driver import train

    corpus = tmp_path / "toy.txt"
    corpus.write_text(toy_text(1000, seed=1), encoding="utf-8")
    config = CharLMTrainingConfig(
        train_file=str(corpus), model_name=name, embedding_dim=8, units=16, batch_size=4,
        chunk_length=16, chunks=2, patience=0, export_base=str(tmp_path / "exports"),
        run_dir=str(tmp_path / "runs"), **options)
    train(TASK, config)
    with open(tmp_path / "runs" / name / "history.csv") as file:
        return list(csv.DictReader(file))


def test_cosine_decay_anneals_the_learning_rate_to_zero_over_the_epochs(tmp_path):
    rows = toy_run(tmp_path, "cosine", epochs=3, learning_rate=1e-2, cosine_decay=True)
    shares = [float(r["learning_rate"]) / 1e-2 for r in rows]
    # After one, two and three thirds of the steps: (1 + cos(pi * f)) / 2.
    assert shares == pytest.approx([0.75, 0.25, 0.0], abs=0.03), shares


def test_cosine_decay_anneals_to_the_time_budget_when_it_ends_first():
    # The clock is set, not waited for: a slow machine's first step (tracing) once
    # outlasted a whole trained budget and left the rate at its start.
    import math
    import time

    from training.annealing import CosineAnnealing
    from training.progress import TrainingClock

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    clock = TrainingClock(budget_seconds=100.0)
    clock.started = time.monotonic() - 75.0  # 3/4 of the budget spent, 0 steps of 1000
    annealing = CosineAnnealing(1e-2, total_steps=1000, clock=clock)
    annealing.set_model(model)
    annealing.on_train_batch_begin(0)
    expected = 1e-2 * (1 + math.cos(math.pi * 0.75)) / 2  # 1.46e-3, not 1e-2
    assert float(model.optimizer.learning_rate) == pytest.approx(expected, rel=0.01)


def test_stream_batches_deal_each_segment_to_one_row_chunk_by_chunk():
    ids = np.random.default_rng(0).integers(4, 9, 160).astype(np.int32)
    ids[3::4] = 3  # lines of three characters and a newline (id 3)
    batches = stream_batches(ids, line_starts(ids, 3), batch_size=3, chunk_length=8,
                             chunks=2, seed=1)
    assert batches.steps == 6  # 9 segments of 16 characters, 3 rows, 2 chunks each
    stream = batches.dataset.as_numpy_iterator()
    for _ in range(2 * batches.steps // 2):  # two epochs
        (first, first_targets), (second, second_targets) = next(stream), next(stream)
        assert first["reset"].all() and not second["reset"].any()
        chars = np.concatenate([first["chars"], second["chars"]], axis=1)
        targets = np.concatenate([first_targets, second_targets], axis=1)
        assert (chars[:, 0] == BOS_ID).all()
        np.testing.assert_array_equal(chars[:, 1:], targets[:, :-1])  # teacher forcing
        for row in targets:  # a contiguous piece of the stream, from a line start
            (start,) = [s for s in range(len(ids) - 15) if (ids[s:s + 16] == row).all()]
            assert start % 4 == 0, start


def test_carrying_the_state_across_chunks_equals_reading_the_segment_whole():
    keras.utils.set_random_seed(5)
    lm = CharLM(10, CharLMConfig(backbone="gru", embedding_dim=6, units=8, dropout=0.0))
    model = CarriedState(lm, batch_size=2)
    segment = tf.constant(np.random.default_rng(0).integers(4, 10, (2, 12)), tf.int32)
    whole = lm(segment).numpy()
    for k, reset in enumerate((True, False, False)):
        chunk = model({"chars": segment[:, 4 * k:4 * k + 4], "reset": tf.fill([2], reset)})
        np.testing.assert_allclose(chunk.numpy(), whole[:, 4 * k:4 * k + 4], atol=1e-5)
    fresh = model({"chars": segment[:, :4], "reset": tf.fill([2], True)})
    np.testing.assert_allclose(fresh.numpy(), whole[:, :4], atol=1e-5)


def test_score_is_the_sum_of_the_steps_log_probabilities():
    """`score` reads a text whole; the decoder's step function, one character at a time
    from BOS: the same model, the same figure. An empty prompt starts from BOS."""
    keras.utils.set_random_seed(6)
    characters = Characters("abc \n")
    lm = CharLM(characters.size, CharLMConfig(embedding_dim=6, units=8, dropout=0.0))
    lm(tf.zeros([1, 1], tf.int32))
    generator = Generator(lm, characters, max_prompt_chars=100)
    text = "ab ca\nbc"
    scored = generator.score(tf.constant([text, ""]))
    ids = [BOS_ID, *characters.encode_numpy(text).tolist()]
    state, total = lm.initial_state(1), 0.0
    for current, following in itertools.pairwise(ids):
        step, state = lm.step(tf.constant([current]), state)
        total += float(step[0, following])
    assert scored["log_probs"].numpy()[0] == pytest.approx(total, abs=1e-4)
    assert scored["bits_per_char"].numpy()[0] == pytest.approx(
        -total / len(text) / math.log(2), abs=1e-4)
    assert scored["num_chars"].numpy().tolist() == [len(text), 0]
    beams, _ = generator.begin(tf.constant(["", "ab"]), 1, *[tf.constant(v) for v in (
        [1, 1], [0.0, 0.0], [0, 0], [1.0, 1.0], np.array([0, 0], np.int64))])
    assert beams.last_tokens.numpy().tolist() == [BOS_ID, ids[2]]


def test_generated_text_has_the_asked_length_and_its_log_probability(functions):
    """Every output has exactly max_length characters of the alphabet, and its reported
    log-probability is the model's for those characters after the prompt."""
    gen, log_prob = functions
    prompts = ["the cat", "", "Ω dog"]  # Ω: never seen in training, read as UNK
    for options in ({}, {"temperature": 0.0}, {"beam_width": 3, "temperature": 0.0},
                    {"top_k": 3, "top_p": 0.9}):
        texts, log_probs, lengths = gen(prompts, max_length=25, **options)
        assert lengths.tolist() == [25] * 3 and [len(t) for t in texts] == [25] * 3
        assert set("".join(texts)) <= set(" \nabcdeghimnorst"), texts
        joined = log_prob([p + t for p, t in zip(prompts, texts, strict=True)])
        np.testing.assert_allclose(log_probs, joined - log_prob(prompts), atol=2e-3,
                                   err_msg=str(options))
    greedy, _, _ = gen(["the ca", "a big r"], temperature=0.0, max_length=1)
    assert greedy == ["t", "e"]  # "cat", "red": what the text taught it


def test_same_seed_same_text_alone_or_batched_other_seed_other_text(functions):
    gen, _ = functions
    alone, _, _ = gen(["the dog"], seed=11)
    batched, _, _ = gen(["a cat", "the dog", ""], seed=11)
    assert batched[1] == alone[0]
    others = {gen(["the dog"], seed=seed)[0][0] for seed in range(12, 18)}
    assert len(others - {alone[0]}) >= 5


@pytest.fixture(scope="module")
def charlm_server(charlm_export):
    _, base, _ = charlm_export
    process = ServerProcess(base, "--poll-seconds", "0", "--stream-interval-ms", "0")
    process.wait_until_serving()
    yield process
    assert process.stop() == 0, process.log_path.read_text()


def request(prompt: str, **options) -> recur_pb2.GenerateRequest:
    return recur_pb2.GenerateRequest(model=recur_pb2.ModelSpec(name=MODEL), prompt=prompt,
                                     **options)


def test_streamed_and_unary_answers_agree_and_the_stream_comes_as_decoded(charlm_server):
    with RecurClient(charlm_server.target) as client:
        for options in ({"seed": 3, "temperature": 0.7}, {"beam_width": 2}):
            unary = client.stub.Generate(request("the", max_chars=400, **options), timeout=30)
            chunks = list(client.stub.GenerateStream(request("the", max_chars=400, **options),
                                                     timeout=30))
            assert "".join(c.text for c in chunks) == unary.text and len(unary.text) == 400
            assert chunks[-1].done and not any(c.done for c in chunks[:-1])
            # not all at the end: news of 50 calls (a lone input's 8 steps each, and no
            # interval between chunks: --stream-interval-ms 0), read as fast as it is sent
            assert len(chunks) >= 10, [c.text for c in chunks]
            assert unary.log_prob < 0 and unary.model_version == 1


def test_a_request_joining_a_running_decode_late_gets_its_text_alone(charlm_server):
    ask = request("a red", seed=5, max_chars=80)
    with RecurClient(charlm_server.target) as client:
        alone = client.stub.Generate(ask, timeout=30).text
        long_stream = client.stub.GenerateStream(request("", seed=9, max_chars=3000),
                                                 timeout=60)
        next(long_stream)  # the long decode is running
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            client.stub.Generate(ask, timeout=30).text)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        long_stream.cancel()
        unseeded = {client.stub.Generate(request("a red", max_chars=40), timeout=30).text
                    for _ in range(3)}
    assert results == [alone] * 4
    assert len(unseeded) == 3, "an unset seed draws a fresh one"


@pytest.mark.parametrize(("options", "named"), [
    ({"max_chars": 0}, "max_chars"), ({"max_chars": 4097}, "max_chars"),
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"beam_width": 0}, "beam_width"),
    ({"beam_width": 2, "top_p": 2.0}, "top_p")])
def test_bad_options_get_invalid_argument_naming_the_field(charlm_server, options, named):
    with RecurClient(charlm_server.target) as client:
        for call in (client.stub.Generate, lambda r, **kw: list(client.stub.GenerateStream(
                r, **kw))):
            with pytest.raises(grpc.RpcError) as error:
                call(request("the", **options), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert named in error.value.details()
        assert len(client.stub.Generate(request("the", max_chars=5), timeout=30).text) == 5


def test_empty_and_unknown_prompts_are_answered(charlm_server):
    with RecurClient(charlm_server.target) as client:
        for prompt in ("", "Ω\u00e9\U0001f600 cat"):
            text = client.stub.Generate(request(prompt, max_chars=30, seed=1), timeout=30).text
            assert len(text) == 30 and "\ufffd" not in text


def test_the_cli_prints_the_prompt_and_its_continuation(charlm_server, capsys):
    code = client_cli.main(["--target", charlm_server.target, "generate", "the cat",
                            "--max-chars", "30", "--seed", "4", "--temperature", "0.5"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("the cat") and len(out) == len("the cat") + 30 + 1
