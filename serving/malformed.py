"""Request bytes that are not a valid protobuf get INVALID_ARGUMENT, not UNKNOWN.

gRPC's own handling of an undecodable request answers UNKNOWN with the Python
exception's name; this interceptor decodes requests itself and answers like any
other bad field, naming the message type expected.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from serving import metrics


class _Malformed:
    def __init__(self, error: Exception):
        self.error = error


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        method = details.method.rsplit("/", 1)[-1]

        def tolerant(data: bytes):
            try:
                return decode(data)
            except DecodeError as error:
                return _Malformed(error)

        behaviour = handler.unary_stream or handler.unary_unary

        async def guarded(request, context):
            if isinstance(request, _Malformed):
                metrics.REQUESTS.labels("", method, "INVALID_ARGUMENT").inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"the request is not a valid {method} request message: "
                                    f"{request.error}")
            return await behaviour(request, context)

        factory = (grpc.unary_stream_rpc_method_handler if handler.response_streaming
                   else grpc.unary_unary_rpc_method_handler)
        return factory(guarded, request_deserializer=tolerant,
                       response_serializer=handler.response_serializer)
