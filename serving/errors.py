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
