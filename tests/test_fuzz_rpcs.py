"""Property-based fuzzing of every RPC: random and malformed fields always get a proper
status code (never UNKNOWN or INTERNAL), and the server keeps answering valid requests."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos.recur.v1 import recur_pb2
from serving.client import RecurClient

pytestmark = pytest.mark.slow

MODEL = "toy-en-fr"
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED}

texts = st.lists(st.text(max_size=300), max_size=8)
int32 = st.integers(-(2**31), 2**31 - 1)
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
specs = st.builds(recur_pb2.ModelSpec, name=st.sampled_from([MODEL, "", "nope", "../etc"]),
                  version=st.integers(-(2**63), 2**63 - 1))
options = st.builds(recur_pb2.DecodeOptions, beam_width=int32, num_hypotheses=int32,
                    length_penalty=floats, max_length=int32, max_length_ratio=floats)
requests = st.one_of(
    st.builds(recur_pb2.TranslateRequest, model=specs, texts=texts, options=options),
    st.builds(recur_pb2.CaptionRequest, model=specs, image=st.binary(max_size=256),
              options=options),
    st.builds(recur_pb2.TagRequest, model=specs, texts=texts),
    st.builds(recur_pb2.GenerateRequest, model=specs, prompt=st.text(max_size=50),
              max_chars=int32, temperature=floats, top_k=int32, seed=st.integers(0, 2**62),
              beam_width=int32),
    st.builds(recur_pb2.ListModelsRequest, name=st.text(max_size=20)),
)
FIXTURES = [HealthCheck.function_scoped_fixture]  # the module-scoped client is reused on purpose
METHODS = {recur_pb2.TranslateRequest: "Translate", recur_pb2.CaptionRequest: "Caption",
           recur_pb2.TagRequest: "Tag", recur_pb2.GenerateRequest: "Generate",
           recur_pb2.ListModelsRequest: "ListModels"}


@pytest.fixture(scope="module")
def client(server):
    with RecurClient(server[0], timeout=60) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES)
@given(request=requests)
def test_random_requests_get_proper_status_codes(client, request):
    try:
        getattr(client.stub, METHODS[type(request)])(request, timeout=60)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
        assert "Traceback" not in (error.details() or "")
    assert code in EXPECTED, f"{METHODS[type(request)]} answered {code}"


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(payload=st.binary(max_size=200))
def test_malformed_bytes_never_crash_the_server(client, payload):
    raw = client.channel.unary_unary("/recur.v1.Recur/Translate",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
    try:
        raw(payload, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in EXPECTED, error
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in error.details():
            assert "Translate request message" in error.details()


def test_the_server_still_answers_after_the_fuzzing(client):
    response = client.translate(["three two one"], MODEL)
    assert response.results[0].hypotheses[0].text == "trois deux un"
