"""The recur.v1.Recur service: validate, route to the model's batcher, answer.

Every failure becomes a gRPC status with a message a client can act on; no
stack trace reaches a client and no request can take the server down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import grpc

from protos.recur.v1 import recur_pb2, recur_pb2_grpc
from serving import metrics
from serving.batcher import BatcherClosed, DeadlineExpired, QueueFull
from serving.config import LimitsConfig
from serving.registry import ModelNotFound, ModelRegistry, ServedModel, StillLoading
from serving.runners import DecodeKey

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"  # metric label for names that match no model (bounded cardinality)


class RequestError(Exception):
    """A request the server refuses, with the status code and message the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def decode_key(options: recur_pb2.DecodeOptions, model: ServedModel,
               limits: LimitsConfig) -> DecodeKey:
    """Fills unset options with defaults and checks every set one against its range."""
    beam = options.beam_width if options.HasField("beam_width") else limits.default_beam_width
    if not 1 <= beam <= limits.max_beam_width:
        raise invalid(f"options.beam_width must be in 1..{limits.max_beam_width}, got {beam}")
    n = options.num_hypotheses if options.HasField("num_hypotheses") else 1
    if not 1 <= n <= beam:
        raise invalid(f"options.num_hypotheses must be in 1..beam_width ({beam}), got {n}")
    alpha = (options.length_penalty if options.HasField("length_penalty")
             else limits.default_length_penalty)
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 2.0):
        raise invalid(f"options.length_penalty must be in 0..2, got {alpha}")
    model_max = min(int(model.metadata.get("max_length", limits.max_output_length)),
                    limits.max_output_length)
    max_length = options.max_length if options.HasField("max_length") else model_max
    if not 1 <= max_length <= limits.max_output_length:
        raise invalid(f"options.max_length must be in 1..{limits.max_output_length}, "
                      f"got {max_length}")
    ratio = (options.max_length_ratio if options.HasField("max_length_ratio")
             else float(model.metadata.get("max_length_ratio", 2.0)))
    if not (math.isfinite(ratio) and 0.0 <= ratio <= 10.0):
        raise invalid(f"options.max_length_ratio must be in 0..10, got {ratio}")
    return DecodeKey(beam, n, round(float(alpha), 4), max_length, round(float(ratio), 4))


def check_texts(texts, limits: LimitsConfig, field: str = "texts") -> list[str]:
    if not texts:
        raise invalid(f"{field} is empty: send at least one text")
    if len(texts) > limits.max_batch_entries:
        raise invalid(f"{field} has {len(texts)} entries; the limit is "
                      f"{limits.max_batch_entries}: split the request")
    for i, text in enumerate(texts):
        if not text.strip():
            raise invalid(f"{field}[{i}] is empty")
        size = len(text.encode("utf-8"))
        if size > limits.max_text_bytes:
            raise invalid(f"{field}[{i}] is {size} bytes; the limit is {limits.max_text_bytes}")
    return list(texts)


class RecurServicer(recur_pb2_grpc.RecurServicer):
    def __init__(self, registry: ModelRegistry, limits: LimitsConfig):
        self.registry = registry
        self.limits = limits

    def _model(self, spec: recur_pb2.ModelSpec, task: str) -> ServedModel:
        if not spec.name:
            raise invalid("model.name is required (ListModels shows the served models)")
        if spec.version < 0:
            raise invalid(f"model.version must be >= 0, got {spec.version}")
        try:
            model = self.registry.get(spec.name, spec.version)
        except ModelNotFound as error:
            raise RequestError(grpc.StatusCode.NOT_FOUND, str(error)) from None
        except StillLoading as error:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        if model.task != task:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"model {spec.name!r} is a {model.task!r} model, not {task!r}")
        return model

    async def _submit(self, request, task: str, inputs: list, deadline: float | None):
        """Queues `inputs` on the model's batcher; returns (model, results).

        A version swapped out between lookup and submit (hot reload) refuses new work:
        an unpinned request then goes to the version that replaced it.
        """
        for attempt in range(2):
            model = self._model(request.model, task)
            key = decode_key(request.options, model, self.limits)
            try:
                return model, await model.batcher.submit(key, inputs, deadline)
            except BatcherClosed:
                if attempt or request.model.version:
                    raise
        raise AssertionError("unreachable")

    async def _answer(self, method: str, request, context: grpc.aio.ServicerContext,
                      handler: Callable[[], Awaitable]):
        """Runs `handler`, maps every failure to a status, records the metrics."""
        started = time.monotonic()
        spec = getattr(request, "model", None)
        label = ("" if spec is None else spec.name if spec.name in self.registry.models
                 else UNKNOWN_MODEL)
        remaining = context.time_remaining()
        deadline = started + remaining if remaining is not None else None
        code = grpc.StatusCode.OK
        metrics.IN_FLIGHT.labels(method).inc()
        try:
            return await handler()
        except RequestError as error:
            code, message = error.code, error.message
        except QueueFull as error:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        except DeadlineExpired as error:
            code, message = grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
        except BatcherClosed as error:
            code, message = grpc.StatusCode.UNAVAILABLE, f"{error}; retry on another replica"
        except asyncio.CancelledError:  # gRPC ended the call: deadline passed or client left
            # gRPC does not say which; a call cancelled at (or within 50 ms of) its deadline
            # counts as DEADLINE_EXCEEDED, as its client sees it.
            expired = deadline is not None and time.monotonic() >= deadline - 0.05
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("%s failed", method)
            code, message = grpc.StatusCode.INTERNAL, "internal error; the server log has details"
        finally:
            metrics.IN_FLIGHT.labels(method).dec()
            metrics.REQUESTS.labels(label, method, code.name).inc()
            metrics.REQUEST_SECONDS.labels(label, method).observe(time.monotonic() - started)
        await context.abort(code, message)

    async def Translate(self, request, context):
        async def handle():
            self._model(request.model, "translate")  # model errors before field errors
            texts = check_texts(request.texts, self.limits)
            remaining = context.time_remaining()
            deadline = time.monotonic() + remaining if remaining is not None else None
            model, results = await self._submit(request, "translate", texts, deadline)
            metrics.GENERATED_TOKENS.labels(model.name).inc(
                sum(h.num_tokens for nbest in results for h in nbest))
            return recur_pb2.TranslateResponse(
                results=[recur_pb2.NBest(hypotheses=[recur_pb2.Hypothesis(**h._asdict())
                                                     for h in nbest]) for nbest in results],
                model_version=model.version)

        return await self._answer("Translate", request, context, handle)

    async def ListModels(self, request, context):
        async def handle():
            entries = [e for n, e in sorted(self.registry.models.items())
                       if not request.name or n == request.name]
            if request.name and not entries:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}")
            return recur_pb2.ListModelsResponse(models=[_status(e) for e in entries])

        return await self._answer("ListModels", request, context, handle)

    async def _unimplemented(self, method: str, what: str, request, context):
        async def handle():
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} is not served yet: {what} has not landed in this "
                               "release; Translate and ListModels are served")

        return await self._answer(method, request, context, handle)

    async def Caption(self, request, context):
        return await self._unimplemented("Caption", "the image captioner", request, context)

    async def Tag(self, request, context):
        return await self._unimplemented("Tag", "the POS tagger", request, context)

    async def Generate(self, request, context):
        return await self._unimplemented("Generate", "the character LM", request, context)

    async def GenerateStream(self, request, context):
        # A coroutine (not a generator) may serve a stream through context.write.
        await self._unimplemented("GenerateStream", "the character LM", request, context)


def _status(entry) -> recur_pb2.ModelStatus:
    state = recur_pb2.ModelVersionStatus.State
    versions = [recur_pb2.ModelVersionStatus(version=v, state=state.FAILED, error=e)
                for v, e in sorted(entry.failures.items())]
    metrics_, labels = {}, {}
    if entry.loading:
        versions.append(recur_pb2.ModelVersionStatus(version=entry.loading,
                                                     state=state.LOADING))
    if entry.served:
        versions.append(recur_pb2.ModelVersionStatus(version=entry.served.version,
                                                     state=state.AVAILABLE))
        meta = entry.served.metadata
        metrics_ = {k: float(v) for k, v in meta.get("metrics", {}).items()}
        labels = {k: str(meta[k]) for k in ("source_language", "target_language", "created")
                  if k in meta}
    return recur_pb2.ModelStatus(name=entry.name, task=entry.task, versions=versions,
                                 metrics=metrics_, labels=labels)
