"""The part-of-speech tagger: tag mapping, tokenisation rule, training on Brown and on a
user's files, the export, and `Tag` over real gRPC (good and bad requests)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.contract import PRETOKENIZED, TAG, TEXTS
from model.export import read_metadata
from model.lexicon import CLASSES, Lexicon
from model.word_clusters import WordClusters
from model.word_vectors import WordVectors
from model.words import PRETOKENIZED_SEPARATOR, has_tokens, tokenize, tokenize_text
from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from serving.process import ServerProcess
from tests.conftest import ROOT
from training.corpora.tagsets import CURRENCY, POSSESSIVE, UNIVERSAL_TAGS, to_universal
from training.tag import variant

MODEL = "tag-en-universal"


def needs_brown(test):
    """Trains on (or serves a model of) the real Brown corpus."""
    return pytest.mark.corpus(pytest.mark.slow(test))


# --- the tag set ---------------------------------------------------------------------------


@pytest.mark.parametrize(("brown", "universal"), [
    ("nn", "NOUN"), ("np$-tl", "NOUN"), ("nns-hl", "NOUN"), ("pps+bez", "PRON"),
    ("ppss+md", "PRON"), ("do*", "VERB"), ("bez*", "VERB"), ("*", "PRT"), ("fw-in", "X"),
    ("fw-nn-tl", "X"), ("at-t", "DET"), ("cs", "ADP"), ("ap", "ADJ"), ("od", "ADJ"),
    ("``", "."), ("--", "."), ("to", "PRT"), ("pp$", "PRON"), ("cd-hl", "NUM"),
    (POSSESSIVE, "PRT"), (CURRENCY, "."),
])
def test_brown_tags_map_to_the_universal_tags_as_documented(brown, universal):
    assert to_universal(brown) == universal
    assert universal in UNIVERSAL_TAGS


def test_a_tag_that_is_not_browns_is_refused():
    with pytest.raises(KeyError, match="'xyz' is not a Brown tag"):
        to_universal("xyz")


# --- tokenisation ------------------------------------------------------------------------

TEXTS_TO_SPLIT = [
    "Mr. Smith's dog didn't bark at 10:30 on Jan. 5, 1961 -- it cost $1,500 (U.S.).",
    'He said "no"... and left e.g. at 3 p.m.; 90% agreed.',
    "Café naïve “quoted” text… ok ½ x² long-term o'clock 1960's",
    "tabs\tand\u00a0no-break spaces",
]


def test_the_graph_and_python_tokenise_alike():
    graph = tokenize(tf.constant(TEXTS_TO_SPLIT)).to_list()
    for text, tokens in zip(TEXTS_TO_SPLIT, graph, strict=True):
        assert [t.decode("utf-8") for t in tokens] == tokenize_text(text)
    assert tokenize_text(TEXTS_TO_SPLIT[0]) == [
        "Mr.", "Smith's", "dog", "didn't", "bark", "at", "10:30", "on", "Jan.", "5", ",",
        "1961", "--", "it", "cost", "$1,500", "(", "U.S.", ")", "."]
    assert tokenize_text(TEXTS_TO_SPLIT[3]) == ["tabs", "and", "no-break", "spaces"]


# Characters that Python's Unicode version assigns: for newer ones (CJK Extension H...)
# the TensorFlow build's RE2 tables may know more than Python and split differently.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(ASSIGNED, max_size=60), min_size=1, max_size=16))
def test_any_text_tokenises_alike_in_the_graph_and_in_python(texts):
    graph = tokenize(tf.constant(texts)).to_list()
    for text, tokens in zip(texts, graph, strict=True):
        assert [t.decode("utf-8") for t in tokens] == tokenize_text(text)
        assert has_tokens(text) == bool(tokens)


def test_variants_split_what_brown_keeps_together():
    rng = random.Random(0)  # its first draw (0.84) keeps the case
    sentence = [("``", "``"), ("He's", "pps+bez"), ("Atlanta's", "np$"), ("friend", "nn"),
                ("and", "cc"), ("don't", "do*"), ("pay", "vb"), ("$5", "nns"), ("''", "''")]
    assert variant(sentence, "universal", rng) == [
        ('"', "``"), ("He", "pps"), ("'s", "bez"), ("Atlanta", "np"), ("'s", POSSESSIVE),
        ("friend", "nn"), ("and", "cc"), ("do", "do"), ("n't", "*"), ("pay", "vb"),
        ("$", CURRENCY), ("5", "cd"), ('"', "''")]
    fine = variant(sentence, "brown", random.Random(0))
    assert ("Atlanta's", "np$") in fine and ("$5", "nns") in fine  # no tag for the pieces


# --- a small tagger trained on Brown -------------------------------------------------------


@pytest.fixture(scope="module")
def tagger_export(tmp_path_factory):
    """A small tagger trained on 3,000 Brown sentences (about 30 s), with the default
    spelling features (WordNet lexicon, GloVe vectors); (report, base). Brown clusters,
    off by default, are covered by the unit tests below."""
    from training.driver import train
    from training.tag import TASK, TagConfig

    base = tmp_path_factory.mktemp("tag-exports")
    config = TagConfig(max_train_examples=3000, max_eval_examples=300, word_dim=32,
                       char_filters=24, units=48, epochs=3, batch_size=32, learning_rate=5e-3,
                       patience=0, export_base=str(base),
                       run_dir=str(tmp_path_factory.mktemp("tag-runs")))
    return train(TASK, config), base


def call(signature, texts: list[str], pretokenized: bool = False) -> dict[str, np.ndarray]:
    return TAG.signature.call(signature, [{TEXTS.name: t, PRETOKENIZED.name: pretokenized}
                                          for t in texts])


def decoded(values) -> list[str]:
    return [v.decode("utf-8") for v in values]


@needs_brown
def test_training_reports_accuracy_and_writes_the_confusion_matrix(tagger_export):
    report, _ = tagger_export
    figures = report.metrics
    assert figures["test_accuracy"] > 85, figures
    assert 0 < figures["test_unseen_accuracy"] < figures["test_accuracy"], figures
    assert 0 < figures["test_sentence_accuracy"] < figures["test_accuracy"], figures
    metadata = read_metadata(report.export_path)
    assert metadata["task"] == "tag" and metadata["tagset"] == "universal"
    assert set(UNIVERSAL_TAGS) - {"X"} <= set(metadata["tags"]) <= set(UNIVERSAL_TAGS)
    runs = Path(metadata["config"]["run_dir"]) / MODEL
    assert (runs / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"
    # The export holds WordNet's lemmas (the default lexicon), so it carries its licence.
    assert metadata["config"]["lexicon"] == "wordnet"
    assert "Princeton University" in (report.export_path / "WORDNET-LICENSE.txt").read_text()
    # And GloVe's vectors (the default --vectors glove): theirs and their packager's.
    assert metadata["config"]["vectors"] == "glove"
    notice = (report.export_path / "GLOVE-LICENSE.txt").read_text()
    assert "GRAYPE Systems" in notice and "Public Domain Dedication and License" in notice


@needs_brown
def test_saved_weights_export_again_with_the_same_figures(tagger_export, tmp_path):
    """--init-weights with --epochs 0: the run's weights exported and evaluated again."""
    from training.driver import WEIGHTS_FILE, train
    from training.tag import TASK, TagConfig

    report, _ = tagger_export
    config = TagConfig(**read_metadata(report.export_path)["config"])
    again = train(TASK, dataclasses.replace(
        config, epochs=0, export_base=str(tmp_path),
        init_weights=str(Path(config.run_dir) / config.name / WEIGHTS_FILE)))
    assert again.epochs_run == [] and again.metrics == report.metrics


@needs_brown
def test_the_export_tokenises_raw_text_and_tags_it(tagger_export):
    report, _ = tagger_export
    signature = tf.saved_model.load(str(report.export_path)).signatures["tag"]
    out = call(signature, ["The jury said it didn't find any evidence.", "Mr. Smith ran."])
    assert out["source_tokens"].tolist() == [9, 4]
    assert decoded(out["tokens"][0]) == ["The", "jury", "said", "it", "didn't", "find", "any",
                                         "evidence", "."]
    tags = decoded(out["tags"][0])
    assert tags[0] == "DET" and tags[1] == "NOUN" and tags[2] == "VERB" and tags[-1] == "."
    assert decoded(out["tokens"][1][:4]) == ["Mr.", "Smith", "ran", "."]
    assert decoded(out["tags"][1])[3] == "."
    probabilities = out["probabilities"]
    assert ((probabilities[0] > 0.2) & (probabilities[0] <= 1)).all()
    assert out["tags"][1][4] == b"" and probabilities[1][4] == 0  # padding


@needs_brown
def test_pretokenised_input_is_tagged_as_sent(tagger_export):
    report, _ = tagger_export
    signature = tf.saved_model.load(str(report.export_path)).signatures["tag"]
    tokens = ["The", "jury", "said", "it", "didn't", "find", "any", "evidence", "."]
    raw = call(signature, [" ".join(tokens)])
    pre = call(signature, [PRETOKENIZED_SEPARATOR.join(tokens)], pretokenized=True)
    assert decoded(pre["tokens"][0]) == tokens
    assert decoded(pre["tags"][0]) == decoded(raw["tags"][0])
    split = call(signature, [PRETOKENIZED_SEPARATOR.join(["did", "n't", "New York"])], True)
    assert decoded(split["tokens"][0]) == ["did", "n't", "New York"]  # never re-split


@needs_brown
def test_padding_never_changes_a_tokens_tag(tagger_export):
    report, _ = tagger_export
    signature = tf.saved_model.load(str(report.export_path)).signatures["tag"]
    short = "Time flies like an arrow."
    alone = call(signature, [short])
    long = "The old man the boats , and " * 12 + "the fruit flies like a banana."
    batched = call(signature, [long, short, "Go."])
    n = int(alone["source_tokens"][0])
    assert decoded(batched["tags"][1][:n]) == decoded(alone["tags"][0][:n])
    np.testing.assert_allclose(batched["probabilities"][1][:n], alone["probabilities"][0][:n],
                               rtol=1e-5)
    assert (batched["tags"][1][n:] == b"").all()


# --- a user's own treebank ------------------------------------------------------------------

NOUNS = ["Dogs", "Cats", "Birds", "Fish", "Wolves", "Horses", "Bees", "Owls", "Frogs", "Ants"]
VERBS = ["bark", "sleep", "sing", "swim", "howl", "run", "buzz", "hoot", "croak", "dig"]


def conllu_sentence(number: int, noun: str, verb: str) -> str:
    return (f"# sent_id = {number}\n1-2\t{noun}{verb}\t_\t_\t_\t_\t_\t_\t_\t_\n"
            f"1\t{noun}\t_\tNOUN\tNNS\t_\t2\tnsubj\t_\t_\n2\t{verb}\t_\tVERB\tVBP\t_\t0\troot\t_\t_\n"
            f"3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_\n\n")


@pytest.mark.slow
@pytest.mark.parametrize(("form", "output"), [("conllu", "softmax"), ("word-tag", "softmax"),
                                              ("word-tag", "crf")])
def test_training_on_a_users_treebank(tmp_path, form, output):
    """Both formats train, keep their tags as written and export a tagger of them, with
    either output layer."""
    rng = random.Random(0)
    pairs = [(rng.choice(NOUNS), rng.choice(VERBS)) for _ in range(300)]
    if form == "conllu":
        path = tmp_path / "mine.conllu"
        path.write_text("".join(conllu_sentence(i, n, v) for i, (n, v) in enumerate(pairs)))
        tags = ["NOUN", "VERB", "PUNCT"]
    else:
        path = tmp_path / "mine.txt"
        path.write_text("".join(f"{n}/NNS {v}/VBP ./.\n" for n, v in pairs))
        tags = ["NNS", "VBP", "."]
    out = subprocess.run(
        [sys.executable, "-m", "training.run", "tag", "--train-file", str(path), "--epochs",
         "6", "--learning-rate", "0.01", "--units", "16", "--word-dim", "16",
         "--char-filters", "8", "--lexicon", "none", "--vectors", "none", "--output", output,
         "--run-dir", str(tmp_path / "runs"),
         "--export-base",
         str(tmp_path / "exports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    export = tmp_path / "exports" / "tag-mine" / "1"
    metadata = read_metadata(export)
    assert metadata["tagset"] == path.name and sorted(metadata["tags"]) == sorted(tags)
    assert metadata["metrics"]["test_accuracy"] == 100.0, out.stdout
    assert metadata["config"]["output"] == output
    signature = tf.saved_model.load(str(export)).signatures["tag"]
    tagged = call(signature, ["Cats sleep.", "Dogs run fast."])
    assert decoded(tagged["tags"][0])[:3] == tags
    probabilities = tagged["probabilities"]
    assert ((probabilities[0, :3] > 0.5) & (probabilities[0, :3] <= 1.0)).all(), probabilities
    assert probabilities[0, 3] == 0.0 and (probabilities[1, :4] > 0).all()


# --- Tag over gRPC -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tag_server(tagger_export):
    _, base = tagger_export
    process = ServerProcess(base, "--poll-seconds", "0", "--max-tag-tokens", "300")
    process.wait_until_serving()
    yield process
    assert process.stop() == 0, process.log_path.read_text()


def tag_request(**fields) -> recur_pb2.TagRequest:
    return recur_pb2.TagRequest(model=recur_pb2.ModelSpec(name=MODEL), **fields)


@needs_brown
def test_tag_over_grpc_both_input_forms(tag_server, tagger_export):
    report, _ = tagger_export
    signature = tf.saved_model.load(str(report.export_path)).signatures["tag"]
    text = "The jury said it didn't find any evidence."
    expected = call(signature, [text])
    with RecurClient(tag_server.target) as client:
        raw = client.tag([text, "Go."])
        pre = client.tag(token_lists=[["The", "jury", "said", "it", "did", "n't", "find"]])
        assert raw.model_version == 1 and len(raw.results) == 2
        tokens = raw.results[0].tokens
        assert [t.token for t in tokens] == decoded(expected["tokens"][0])
        assert [t.tag for t in tokens] == decoded(expected["tags"][0])
        assert [t.probability for t in tokens] == pytest.approx(
            expected["probabilities"][0].tolist(), rel=1e-5)
        assert [t.token for t in raw.results[1].tokens] == ["Go", "."]
        assert [t.token for t in pre.results[0].tokens][4:6] == ["did", "n't"]
        status = client.list_models(MODEL).models[0]
    assert status.task == "tag" and status.labels["tagset"] == "universal"
    assert status.metrics["test_accuracy"] == report.metrics["test_accuracy"]


@needs_brown
def test_the_client_prints_tokens_with_their_tags(tag_server):
    out = subprocess.run([sys.executable, "-m", "serving.client", "--target",
                          tag_server.target, "tag", "The jury said it."], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("[1] The/DET jury/NOUN said/VERB it/PRON ./.")


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "set exactly one of texts"),
    ({"texts": ["a"], "token_lists": [recur_pb2.TokenList(tokens=["a"])]}, "not both"),
    ({"texts": ["  "]}, r"texts\[0\] is empty"),
    ({"texts": ["ok", "?" * 2 + " x" * 400]}, r"hold 403\+ tokens in all; the limit is 300"),
    ({"texts": ["ok", "\x01\x02"]}, r"texts\[1\] has no tokens"),
    ({"token_lists": [recur_pb2.TokenList(tokens=["a"]), recur_pb2.TokenList()]},
     r"token_lists\[1\].tokens is empty"),
    ({"token_lists": [recur_pb2.TokenList(tokens=["a", ""])]},
     r"token_lists\[0\].tokens\[1\] is empty"),
    ({"token_lists": [recur_pb2.TokenList(tokens=["a\x1fb"])]}, "contains U\\+001F"),
    ({"token_lists": [recur_pb2.TokenList(tokens=["w"] * 301)]},
     r"hold 301\+ tokens in all; the limit is 300"),
])
@needs_brown
def test_bad_tag_requests_name_the_field(tag_server, fields, message):
    with RecurClient(tag_server.target) as client, pytest.raises(grpc.RpcError) as error:
        client.stub.Tag(tag_request(**fields), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, error.value.details()), error.value.details()


@needs_brown
def test_bad_requests_lose_nothing_for_the_others(tag_server):
    """Good and bad requests at once: every good one is answered, every bad one refused."""
    answers, refusals = [], []

    def send(i: int) -> None:
        with RecurClient(tag_server.target) as client:
            request = (tag_request(texts=[f"Sentence number {i} is fine."]) if i % 2
                       else tag_request(token_lists=[recur_pb2.TokenList(tokens=["x", ""])]))
            try:
                answers.append(client.stub.Tag(request, timeout=60))
            except grpc.RpcError as error:
                refusals.append(error.code())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12 and refusals == [grpc.StatusCode.INVALID_ARGUMENT] * 12
    assert all([t.token for t in a.results[0].tokens][:2] == ["Sentence", "number"]
               for a in answers)


@needs_brown
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(ASSIGNED, max_size=80), max_size=6),
       token_lists=st.lists(st.lists(st.text(max_size=12), max_size=6), max_size=4))
def test_random_tag_requests_get_an_answer_or_a_clear_refusal(tag_server, texts,
                                                               token_lists):
    """Whatever the fields hold: OK with one tag per token (as many as the server's own
    count), or INVALID_ARGUMENT; never another status."""
    request = tag_request(texts=texts,
                          token_lists=[recur_pb2.TokenList(tokens=t) for t in token_lists])
    with RecurClient(tag_server.target) as client:
        try:
            response = client.stub.Tag(request, timeout=60)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            return
    expected = ([tokenize_text(t) for t in texts] if texts
                else [list(t) for t in token_lists])
    assert [[t.token for t in r.tokens] for r in response.results] == expected


@needs_brown
def test_a_tagger_does_not_translate(tag_server):
    with RecurClient(tag_server.target) as client, pytest.raises(grpc.RpcError) as error:
        client.stub.Translate(recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=MODEL), texts=["x"]), timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "answers Tag, not Translate" in error.value.details()


def test_the_lexicon_gives_the_classes_of_a_word_its_lemma_and_its_head():
    lexicon = Lexicon({"NOUN": ["box", "floor", "man", "ice_cream"],
                       "VERB": ["thrive", "box", "stop"],
                       "ADJ": ["tangy", "left-handed", "grim"], "ADV": ["thrice"]})
    words = ["thrives", "Boxes", "tangier", "men", "first-floor", "left-handed", "Thrice",
             "floored", "ice_cream", "zebra", "-", "floor-", "-floor", "-", "thrivesss",
             "stopped", "grimmer", "grimer"]
    bits = lexicon(tf.constant(words)).numpy()
    found = {w: ({CLASSES[i] for i in np.flatnonzero(row[:4])},
                 {CLASSES[i] for i in np.flatnonzero(row[4:])})
             for w, row in zip(words, bits, strict=True)}
    assert found == {
        "thrives": ({"VERB"}, set()), "Boxes": ({"NOUN", "VERB"}, set()),
        "tangier": ({"ADJ"}, set()), "men": ({"NOUN"}, set()),
        "first-floor": (set(), {"NOUN"}), "left-handed": ({"ADJ"}, set()),
        "Thrice": ({"ADV"}, set()), "floored": (set(), set()),  # no VERB "floor" here
        "ice_cream": (set(), set()), "zebra": (set(), set()), "-": (set(), set()),
        "floor-": (set(), set()), "-floor": (set(), set()), "thrivesss": (set(), set()),
        "stopped": ({"VERB"}, set()), "grimmer": ({"ADJ"}, set()), "grimer": ({"ADJ"}, set())}


def test_an_unknown_lexicon_is_refused_by_its_flag():
    from training.corpora import CorpusError
    from training.tag import TagConfig, lexicon

    assert lexicon(TagConfig(lexicon="none")) is None
    with pytest.raises(CorpusError, match="--lexicon must be one of wordnet, none"):
        lexicon(TagConfig(lexicon="wordnet3"))


def test_word_clusters_read_a_word_as_written_and_in_lower_case():
    """Cluster, coarse cluster (the path's first 6 bits, lowest first) and frequency
    bucket, as written (a casing the tables lack read in lower case) and in lower case;
    0 = unknown."""
    # Paths as spaCy encodes them: `dog` and `cat` one cluster, `wolf` a neighbour
    # (same first 6 bits), `the` elsewhere; `acacia` has a frequency but no cluster.
    clusters = WordClusters({"dog": 0b1100101, "cat": 0b1100101, "wolf": 0b0100101,
                             "the": 0b1011, "The": 0b11110},
                            {"dog": -10.2, "cat": -10.6, "the": -3.5, "acacia": -16.4})
    words = ["Dog", "cat", "wolf", "the", "The", "THE", "acacia", "zebra"]
    found = clusters(tf.constant(words)).numpy().tolist()
    ids = {word: row[:3] for word, row in zip(words, found, strict=True)}
    lower = {word: row[3:] for word, row in zip(words, found, strict=True)}
    assert ids["Dog"][:2] == ids["cat"][:2] and (ids["Dog"][2], ids["cat"][2]) == (11, 12)
    assert ids["wolf"][0] != ids["cat"][0] and ids["wolf"][1] == ids["cat"][1]
    assert ids["THE"] == ids["the"] != ids["The"]
    assert lower["The"] == lower["THE"] == ids["the"] and lower["Dog"] == ids["Dog"]
    assert ids["acacia"] == [0, 0, 17] and ids["zebra"] == lower["zebra"] == [0, 0, 0]
    assert clusters.vocabulary_sizes == (5, 65, 32)


def test_unknown_clusters_are_refused_by_their_flag():
    from training.corpora import CorpusError
    from training.tag import TagConfig, word_clusters

    assert word_clusters(TagConfig(clusters="none")) is None
    with pytest.raises(CorpusError, match="--clusters must be one of spacy, none"):
        word_clusters(TagConfig(clusters="brown"))


def test_word_vectors_read_a_word_in_lower_case_then_its_stem_then_its_last_part():
    """A token's vector: of its lower case, else without a possessive 's, else of the
    hyphenated compound's last part; zeros and a 0 'found' feature when none."""
    words = ["the", "atlanta", "floor", "'s", "years", "-"]
    vectors = WordVectors(words, np.arange(12, dtype=np.float16).reshape(6, 2) + 1)
    tokens = ["The", "ATLANTA'S", "Atlanta", "first-floor", "'s", "years'", "--",
              "zebra", "floor-", ""]
    found = vectors(tf.constant(tokens)).numpy()
    assert found.dtype == np.float32 and vectors.features == 3
    rows = {token: found[i].tolist() for i, token in enumerate(tokens)}
    assert rows["The"] == [1, 2, 1] and rows["Atlanta"] == rows["ATLANTA'S"] == [3, 4, 1]
    assert rows["first-floor"] == [5, 6, 1] and rows["'s"] == [7, 8, 1]
    assert rows["years'"] == [9, 10, 1] and rows["--"] == [11, 12, 1]
    assert rows["zebra"] == rows["floor-"] == rows[""] == [0, 0, 0]


def test_unknown_vectors_are_refused_by_their_flag():
    from training.corpora import CorpusError
    from training.tag import TagConfig, word_vectors

    assert word_vectors(TagConfig(vectors="none")) is None
    with pytest.raises(CorpusError, match="--vectors must be one of glove, none"):
        word_vectors(TagConfig(vectors="word2vec"))


@pytest.mark.parametrize("settings", [{}, {"cell": "gru", "layers": 2, "output": "crf"}])
def test_stored_and_computed_spelling_features_tag_alike(tmp_path, settings):
    """The export stores spelling features (characters, lexicon, clusters, word vectors)
    of known spellings and computes the others, and runs its recurrent layers over the
    real tokens only (`model/recurrent_inference.py`): the same tags and probabilities
    as the Keras model fed character ids, lexicon bits, cluster ids and vectors, whatever
    mix a batch has."""
    from model.tagger import Tagger, TaggerConfig, TaggerExport, TaggerFeatures

    lexicon = Lexicon({"NOUN": ["dog", "zebra"], "VERB": ["run", "sprint"]})
    clusters = WordClusters({"dog": 5, "zebras": 5, "runs": 6, "sprints": 6},
                            {"dog": -9.0, "zebras": -14.0, "away": -8.0})
    vectors = WordVectors(["dog", "zebras", "sprints", "away"],
                          np.random.default_rng(0).normal(size=(4, 5)).astype(np.float16))
    features = TaggerFeatures(["the", "dog", "runs"], max_word_chars=8, lexicon=lexicon,
                              clusters=clusters, vectors=vectors)
    model = Tagger([0, 0, 5, 3, 2], 4, TaggerConfig(word_dim=8, char_filters=6, units=8,
                                                    clusters="spacy", vectors="glove",
                                                    **settings),
                   clusters.vocabulary_sizes)
    export = TaggerExport(model, features, ["A", "B", "C", "D"], ["The", "dog", "runs", "."])
    texts = ["The dog runs .", "the Dog sprints away , the dog runs .", "Zebras !"]
    out = call(export.tag, texts)
    tokens = tf.ragged.constant([t.split() for t in texts])
    best, expected = model.best_tags(model(features(tokens)),
                                     tf.sequence_mask(tokens.row_lengths()))
    for i, row in enumerate(tokens.to_list()):
        assert decoded(out["tags"][i][:len(row)]) == ["ABCD"[t] for t in best[i][:len(row)]]
        np.testing.assert_allclose(out["probabilities"][i][:len(row)],
                                   expected[i][:len(row)], rtol=1e-5)
    export.save(tmp_path / "export")
    loaded = tf.saved_model.load(str(tmp_path / "export")).signatures["tag"]
    np.testing.assert_allclose(call(loaded, texts)["probabilities"], out["probabilities"],
                               rtol=1e-6)


@needs_brown
def test_the_tagging_benchmark_runs_end_to_end(tagger_export, tmp_path):
    _, base = tagger_export
    output = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.tag", str(base), "--model", MODEL, "--batch-sizes",
         "1", "8", "--concurrency", "1", "2", "--sentences", "64", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(output.with_suffix(".json").read_text())
    assert [r["batch_size"] for r in results["offline"]] == [1, 8]
    assert [r["clients"] for r in results["server"]] == [1, 2]
    assert all(r["errors"] == 0 and r["tokens_per_second"] > 0 for r in results["server"])
