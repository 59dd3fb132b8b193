"""Transport security, bearer tokens, and where the server's settings come from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from protos.recur.v1 import recur_pb2
from protos.recur.v1.recur_pb2_grpc import RecurStub
from serving.client import RecurClient
from serving.process import ServerProcess, free_port
from serving.server import build_parser, load_configs
from tests.test_server_e2e import metric, scrape

MODEL = "toy-en-fr"


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")
    return {p.stem + p.suffix: p for p in directory.iterdir()}


@pytest.mark.slow
def test_mutual_tls_and_bearer_tokens(tiny_export, tmp_path):
    _, base = tiny_export
    files = make_certificates(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text("# team A\nsecret-a\nsecret-b\n")
    probes = free_port()
    server = ServerProcess(base, "--poll-seconds", "0", "--tls-cert-file",
                           str(files["server.pem"]), "--tls-key-file", str(files["server.key"]),
                           "--tls-client-ca-file", str(files["ca.pem"]),
                           "--auth-tokens-file", str(tokens), "--health-port", str(probes))
    tls = dict(tls_ca=str(files["ca.pem"]), tls_cert=str(files["client.pem"]),
               tls_key=str(files["client.key"]))
    try:
        with RecurClient(server.target, token="secret-b", **tls) as client:
            client.wait_until_serving(120)
            response = client.translate(["one two"], MODEL)
            assert response.results[0].hypotheses[0].text == "un deux"
        for token in ("", "wrong"):
            with RecurClient(server.target, token=token, **tls) as client:
                with pytest.raises(grpc.RpcError) as error:
                    client.translate(["one two"], MODEL)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "bearer token" in error.value.details()
                reply = client.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING  # probes stay open
                # reflection too, so that grpcurl can find health without a token
                services = ProtoReflectionDescriptorDatabase(client.channel).get_services()
                assert {"recur.v1.Recur", "grpc.health.v1.Health"} <= set(services)
        no_client_cert = dict(tls_ca=str(files["ca.pem"]))
        with RecurClient(server.target, token="secret-a", timeout=10,
                         **no_client_cert) as client, pytest.raises(grpc.RpcError) as error:
            client.translate(["one two"], MODEL)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE  # handshake refused
        with grpc.insecure_channel(server.target) as plain, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
        # the probe port: plaintext health, and nothing else
        with grpc.insecure_channel(f"127.0.0.1:{probes}") as plain:
            reply = health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(service="recur.v1.Recur"), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as error:
                RecurStub(plain).ListModels(recur_pb2.ListModelsRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert metric(scrape(server.metrics_url), "recur_requests_total",
                      method="Translate", code="UNAUTHENTICATED") == 2
    finally:
        assert server.stop() == 0


def settings(argv: list[str]):
    return load_configs(build_parser().parse_args(argv))


def test_flags_beat_environment_beat_config_file_beat_defaults(tmp_path, monkeypatch):
    config = tmp_path / "recur.toml"
    config.write_text("port = 7001\nmax_batch_size = 16\nmetrics_port = 7002\n")
    monkeypatch.setenv("RECUR_PORT", "7101")
    server, batching, _, _ = settings(["--config", str(config), "--port", "7201"])
    assert server.port == 7201  # flag
    server, batching, limits, _ = settings(["--config", str(config)])
    assert server.port == 7101  # environment
    assert server.metrics_port == 7002 and batching.max_batch_size == 16  # file
    assert limits.max_beam_width == 16  # default
    monkeypatch.delenv("RECUR_PORT")
    assert settings(["--config", str(config)])[0].port == 7001


def test_bad_settings_are_named(tmp_path, monkeypatch):
    config = tmp_path / "recur.toml"
    config.write_text("prot = 7001\n")
    with pytest.raises(ValueError, match=r"unknown settings \['prot'\]"):
        settings(["--config", str(config)])
    monkeypatch.setenv("RECUR_MAX_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match="RECUR_MAX_BATCH_SIZE='lots' is not a valid int"):
        settings([])


def test_a_model_may_have_its_own_batching_settings(tmp_path):
    config = tmp_path / "recur.toml"
    config.write_text('max_batch_size = 16\n[models.toy-en-fr]\nscheduling = "request"\n'
                      "batch_timeout_ms = 2\n")
    _, batching, _, per_model = settings(["--config", str(config), "--max-queue-size", "99"])
    assert batching.scheduling == "step"
    toy = per_model["toy-en-fr"]
    assert (toy.scheduling, toy.batch_timeout_ms) == ("request", 2)
    assert (toy.max_batch_size, toy.max_queue_size) == (16, 99)  # the rest as for all
    for bad, message in [('scheduling = "fast"', "scheduling must be one of"),
                         ("max_batch_size = 'x'", "max_batch_size = 'x' is not a valid int"),
                         ("batch_size = 3", r"unknown settings \['batch_size'\]")]:
        config.write_text(f"[models.toy-en-fr]\n{bad}\n")
        with pytest.raises(ValueError, match=message):
            settings(["--config", str(config)])
