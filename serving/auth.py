"""Bearer-token authentication for every RPC except health checks and reflection.

Clients send `authorization: Bearer <token>` metadata; a missing or unknown token
gets UNAUTHENTICATED. grpc.health.v1 stays open so that Kubernetes' gRPC probes and
grpc-health-probe (which send no metadata) keep working. Reflection stays open too:
it describes only the services' public protos (the ones in this repository), and
grpcurl needs it before it can call health; `--no-reflection` turns it off.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

import grpc

from serving import metrics

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


def read_tokens(path: str) -> list[str]:
    """One token per line; blank lines and #-comments are ignored."""
    lines = Path(path).read_text().splitlines()
    tokens = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tokens


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[str]):
        self._tokens = [t.encode() for t in tokens]

    def _allowed(self, metadata) -> bool:
        value = dict(metadata or ()).get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # compare with every token, in constant time, so timing reveals nothing
        matches = [hmac.compare_digest(token.encode(), t) for t in self._tokens]
        return any(matches)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if (handler is None or details.method.startswith(OPEN_PREFIXES)
                or self._allowed(details.invocation_metadata)):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        metrics.REQUESTS.labels("", method, "UNAUTHENTICATED").inc()

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or unknown bearer token: send metadata "
                                "'authorization: Bearer <token>'")

        factory = (grpc.unary_stream_rpc_method_handler if handler.response_streaming
                   else grpc.unary_unary_rpc_method_handler)
        return factory(refuse, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)
