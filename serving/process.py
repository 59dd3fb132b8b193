"""The server as a child process on free localhost ports: for the tests and the benchmark."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from serving.client import RecurClient

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `python -m serving` process on free localhost ports."""

    def __init__(self, base: Path, *args: str):
        self.port, self.metrics_port = free_port(), free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = base.parent / f"server-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model-base-path", str(base), "--host",
             "127.0.0.1", "--port", str(self.port), "--metrics-host", "127.0.0.1",
             "--metrics-port", str(self.metrics_port), "--grace-seconds", "5", *args],
            cwd=ROOT, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def wait_until_serving(self, seconds: float = 120) -> None:
        """Raises TimeoutError (after killing the server) if it is not SERVING in time."""
        try:
            with RecurClient(self.target) as client:
                client.wait_until_serving(seconds)
        except TimeoutError:
            self.process.kill()
            raise TimeoutError(f"server not SERVING after {seconds:.0f} s; its log ends:\n"
                               + self.log_path.read_text()[-4000:]) from None

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after 30 s)."""
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
