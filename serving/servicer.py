"""The recur.v1.Recur service: route each RPC to the named model's task and batcher.

A request goes: RPC -> the model it names -> its task parses it into inputs ->
the model's batcher -> the export's functions -> the task builds the response. No
line here knows a task: an RPC is answered by whichever task of the named model
lists it. Every failure becomes a gRPC status with a message a client can act on;
no stack trace reaches a client and no request can take the server down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import Message

from model.contract import Meta
from protos.recur.v1 import recur_pb2, recur_pb2_grpc
from serving import metrics
from serving.batcher import (
    BatcherClosed,
    DeadlineExpired,
    InputFailed,
    OnProgress,
    QueueFull,
)
from serving.config import LimitsConfig
from serving.errors import RequestError, invalid
from serving.registry import ModelEntry, ModelNotFound, ModelRegistry, ServedModel, StillLoading
from serving.task import Inputs, Outputs, Task

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"  # metric label for names that match no model (bounded cardinality)


class RecurServicer(recur_pb2_grpc.RecurServicer):
    def __init__(self, registry: ModelRegistry, tasks: dict[str, Task], limits: LimitsConfig):
        self.registry = registry
        self.tasks = tasks
        self.limits = limits
        self.answered = {method for task in tasks.values() for method in task.methods}

    # Every model RPC is answered the same way; which task answers depends on the model.
    async def Translate(self, request, context):
        return await self._unary("Translate", request, context)

    async def Caption(self, request, context):
        return await self._unary("Caption", request, context)

    async def Tag(self, request, context):
        return await self._unary("Tag", request, context)

    async def Generate(self, request, context):
        return await self._unary("Generate", request, context)

    async def GenerateStream(self, request, context):
        # A coroutine (not a generator) may serve a stream through context.write.
        await self._stream("GenerateStream", request, context)

    async def ListModels(self, request, context):
        async def handle(deadline: float | None):
            entries = [e for n, e in sorted(self.registry.models.items())
                       if not request.name or n == request.name]
            if request.name and not entries:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}")
            return recur_pb2.ListModelsResponse(models=[self._status(e) for e in entries])

        return await self._answer("ListModels", request, context, handle)

    async def _unary(self, method: str, request: Message, context) -> Message:
        async def handle(deadline: float | None):
            model, task, inputs, pending = self._submit(method, request, deadline)
            results = await pending
            response, tokens = task.respond(method, request, inputs, results, model.version)
            metrics.GENERATED_TOKENS.labels(model.name).inc(tokens)
            return response

        return await self._answer(method, request, context, handle)

    async def _stream(self, method: str, request: Message, context) -> None:
        """Sends what the decode settles as it goes (step scheduling; under request
        scheduling everything comes at the end), then the final messages."""
        async def handle(deadline: float | None):
            updates: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
            model, task, inputs, pending = self._submit(
                method, request, deadline, lambda index, text: updates.put_nowait((index, text)))
            stream = task.stream(method, request, inputs, model.version)
            results = asyncio.ensure_future(pending)
            # The batcher reports progress before it answers, so None comes last.
            results.add_done_callback(lambda _: updates.put_nowait(None))
            try:
                while (update := await updates.get()) is not None:
                    for message in stream.update(*update):
                        await context.write(message)
                messages, tokens = stream.finish(results.result())
            finally:
                results.cancel()  # a client gone mid-stream frees its rows at the next step
            for message in messages:
                await context.write(message)
            metrics.GENERATED_TOKENS.labels(model.name).inc(tokens)

        await self._answer(method, request, context, handle)

    def _submit(self, method: str, request: Message, deadline: float | None,
                on_progress: OnProgress | None = None
                ) -> tuple[ServedModel, Task, Inputs, Awaitable[list[Outputs]]]:
        """Resolves the model, has its task parse the request, queues the inputs; the
        awaitable answers their outputs, or raises the task's client error for inputs
        that broke the model alone (`InputFailed`: an image that does not decode).

        A version swapped out between lookup and submit (hot reload) refuses new work:
        an unpinned request then goes to the version that replaced it.
        """
        if method not in self.answered:
            served = ", ".join(sorted(self.answered | {"ListModels"}))
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} is not served: no model kind of this release "
                               f"answers it (served: {served})")
        for attempt in range(2):
            model, task = self._model(method, request.model)
            inputs = task.parse(method, request, model.metadata, self.limits)
            try:
                pending = model.batcher.submit(inputs.key, inputs.merged(), deadline,
                                               on_progress)
            except BatcherClosed:
                if attempt or request.model.version:
                    raise
                continue
            return model, task, inputs, self._explained(method, request, task, pending)
        raise AssertionError("unreachable")

    @staticmethod
    async def _explained(method: str, request: Message, task: Task,
                         pending: Awaitable[list[Outputs]]) -> list[Outputs]:
        try:
            return await pending
        except InputFailed as failure:
            refusal = task.refusal(method, request, failure.error)
            if refusal is None:
                raise
            raise refusal from None

    def _model(self, method: str, spec: recur_pb2.ModelSpec) -> tuple[ServedModel, Task]:
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
        task = self.tasks[model.task]
        if method not in task.methods:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"model {spec.name!r} is a {task.name!r} model: it answers "
                               f"{', '.join(task.methods)}, not {method}")
        return model, task

    async def _answer(self, method: str, request, context: grpc.aio.ServicerContext,
                      handler: Callable[[float | None], Awaitable]):
        """Runs `handler(deadline)`, maps every failure to a status, records the metrics."""
        started = time.monotonic()
        spec = getattr(request, "model", None)
        label = ("" if spec is None else spec.name if spec.name in self.registry.models
                 else UNKNOWN_MODEL)
        remaining = context.time_remaining()
        deadline = started + remaining if remaining is not None else None
        code = grpc.StatusCode.OK
        metrics.IN_FLIGHT.labels(method).inc()
        try:
            return await handler(deadline)
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

    def _status(self, entry: ModelEntry) -> recur_pb2.ModelStatus:
        state = recur_pb2.ModelVersionStatus.State
        versions = [recur_pb2.ModelVersionStatus(version=v, state=state.FAILED, error=e)
                    for v, e in sorted(entry.failures.items())]
        figures, labels = {}, {}
        if entry.loading:
            versions.append(recur_pb2.ModelVersionStatus(version=entry.loading,
                                                         state=state.LOADING))
        if entry.served:
            versions.append(recur_pb2.ModelVersionStatus(version=entry.served.version,
                                                         state=state.AVAILABLE))
            meta = entry.served.metadata
            figures = {k: float(v) for k, v in meta.get(Meta.METRICS, {}).items()}
            labels = self.tasks[entry.served.task].labels(meta)
        return recur_pb2.ModelStatus(name=entry.name, task=entry.task, versions=versions,
                                     metrics=figures, labels=labels)
