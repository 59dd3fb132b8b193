"""Calls whose request message never arrives (headers sent, body never): the server's
connection limits must end them, keep what they hold bounded, and keep answering others."""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest

from protos.recur.v1 import recur_pb2
from serving.client import RecurClient
from serving.config import ServerConfig
from serving.process import ServerProcess
from serving.server import channel_options

pytestmark = pytest.mark.slow

MODEL = "toy-en-fr"


def rss_mb_and_fds(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/status") as status:
        (rss_kb,) = [line.split()[1] for line in status if line.startswith("VmRSS:")]
    return int(rss_kb) / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def test_calls_without_a_request_message_are_ended_and_hold_bounded_memory(tiny_export):
    _, base = tiny_export
    server = ServerProcess(base, "--poll-seconds", "0", "--max-concurrent-streams", "50",
                           "--max-connection-age-seconds", "1",
                           "--max-connection-age-grace-seconds", "0.5")
    server.wait_until_serving()
    pid = server.process.pid
    never = threading.Event()

    def no_request():  # the client sends headers, then waits forever for a message to send
        never.wait()
        yield b""

    # Each channel is its own connection: 8 connections x 50 streams at most in the server.
    attackers = [grpc.insecure_channel(server.target,
                                       options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(8)]
    try:
        with RecurClient(server.target) as client:  # settle, then measure the baseline
            client.translate(["four five"], MODEL)
        rss_before, fds_before = rss_mb_and_fds(pid)
        calls = [attackers[i % 8].stream_unary("/recur.v1.Recur/Translate").future(no_request())
                 for i in range(6000)]
        give_up, early_rss = time.monotonic() + 120, None
        with RecurClient(server.target, timeout=30) as client:
            while not all(call.done() for call in calls):
                assert time.monotonic() < give_up, (
                    f"{sum(not c.done() for c in calls)} calls without a request never ended")
                if early_rss is None and sum(c.done() for c in calls) >= 1500:
                    early_rss = rss_mb_and_fds(pid)[0]
                # other clients are answered all along
                response = client.translate(["four five"], MODEL)
                assert response.results[0].hypotheses[0].text == "quatre cinq"
                time.sleep(0.2)
        codes = {call.exception().code() for call in calls}
        assert codes == {grpc.StatusCode.UNAVAILABLE}, codes
        rss_after, fds_after = rss_mb_and_fds(pid)
    finally:
        never.set()
        for channel in attackers:
            channel.close()
        assert server.stop() == 0
    # At most 400 held at once: memory stops growing once that many are open (holding
    # all 6000 would take over 100 MB), and every connection's socket is given back.
    assert early_rss is not None
    assert rss_after - early_rss < 15, (rss_before, early_rss, rss_after)
    assert rss_after - rss_before < 60, (rss_before, early_rss, rss_after)
    assert fds_after <= fds_before + 2, (fds_before, fds_after)


def test_one_connection_may_send_hundreds_of_calls_at_once(tiny_export):
    """A proxy or a batch job multiplexes many calls onto one connection: gRPC refuses
    streams beyond the per-connection limit with UNAVAILABLE instead of queueing them
    (the old default of 100 failed about a third of 300 such calls), so the default
    must leave room."""
    _, base = tiny_export
    server = ServerProcess(base, "--poll-seconds", "0")
    server.wait_until_serving()
    try:
        with RecurClient(server.target, timeout=60) as client:
            request = recur_pb2.TranslateRequest(model=recur_pb2.ModelSpec(name=MODEL),
                                                 texts=["four five"])
            calls = [client.stub.Translate.future(request, timeout=60) for _ in range(300)]
            texts = [call.result().results[0].hypotheses[0].text for call in calls]
        assert texts == ["quatre cinq"] * 300
    finally:
        assert server.stop() == 0


def test_no_stream_limit_means_no_limit_rather_than_no_calls():
    """gRPC takes a limit of 0 literally: the server would accept no call at all."""
    options = dict(channel_options(ServerConfig(max_concurrent_streams=0)))
    assert options["grpc.max_concurrent_streams"] == 2**31 - 1
