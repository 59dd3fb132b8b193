"""The error a request gets: a gRPC status and a message the client can act on."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """A request the server refuses, with the status code and message the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    """INVALID_ARGUMENT; `message` names the field and says why."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def reason(error: Exception) -> str:
    """An error's own words: its last line that is not a TensorFlow node trace (for a
    graph call's error, "Invalid PNG data, size 649"), else its type."""
    words = [line for line in str(error).splitlines()
             if line.strip() and not line.startswith("\t")]
    return words[-1] if words else type(error).__name__
