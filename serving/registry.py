"""Model registry: finds exports under the base path (TF Serving's layout), loads the
newest version of each model, warms it up, hands out its batcher, and keeps polling.

EXPORT_BASE/<model-name>/<integer version>/ with a SavedModel and recur.json.
Directories that are not integers (e.g. an export still being staged) are
ignored. When a newer version appears it is loaded and warmed up while the
current one keeps serving, then swapped in atomically; the old version drains
(its queued requests finish) and is unloaded. A version that fails to load is
reported (log, metric, ListModels) and the newest older version that loads serves
instead: the one already serving, or at start-up the next one down, so a server
restarted beside a corrupt newest version serves the previous good one rather
than exiting. Removing the serving version's directory rolls back: the newest
version left is loaded and swapped in. A model directory that disappears is
drained and unloaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the SentencePiece ops the exports use

from model.contract import XLA_BUCKET, ContractError, Meta, check_version, has_step_functions
from model.export import read_metadata, versions
from model.startup import settle_heap
from serving import metrics
from serving.batcher import Batcher, BatchingConfig
from serving.config import LimitsConfig
from serving.runner import SignatureRunner
from serving.step_decoder import StepDecoder
from serving.task import Task, row_length

log = logging.getLogger(__name__)

HealthCallback = Callable[[str, bool], None]
"""on_health(model_name, serving) -> None, called on every change."""


class ModelNotFound(LookupError):
    pass


class StillLoading(RuntimeError):
    """Models are still being loaded: the client should retry shortly."""


@dataclass
class ServedModel:
    name: str
    version: int
    path: Path
    task: str
    metadata: dict
    batcher: Batcher
    saved_model: object  # owns the variables the signature reads


@dataclass
class ModelEntry:
    """What ListModels reports of one model directory."""

    name: str
    task: str = ""
    served: ServedModel | None = None
    loading: int = 0  # version being loaded, 0 = none
    failures: dict[int, str] = field(default_factory=dict)


class ModelRegistry:
    """Args:
      tasks: task name -> Task; an export of any other task is reported FAILED.
      limits: request limits (the warm-up request is parsed like any other).
    """

    def __init__(self, base_path: Path, batching: BatchingConfig, tasks: dict[str, Task],
                 limits: LimitsConfig, on_health: HealthCallback | None = None,
                 per_model: dict[str, BatchingConfig] | None = None):
        self.base_path = Path(base_path)
        self.batching = batching
        self.tasks = tasks
        self.limits = limits
        self.per_model = per_model or {}  # batching settings of named models
        self.on_health = on_health or (lambda name, serving: None)
        self.models: dict[str, ModelEntry] = {}
        self.loaded = False  # True once the first scan has finished
        self._background: set[asyncio.Task] = set()  # drains and reloads under way

    async def load_all(self) -> None:
        """The first scan: loads the newest version of every model directory."""
        if not self.base_path.is_dir():
            raise FileNotFoundError(
                f"--model-base-path {self.base_path} does not exist: train a model first "
                "(python -m training.run TASK --export-base ...) or point to its exports")
        await self.refresh()
        self.loaded = True

    async def watch(self, poll_seconds: float) -> None:
        """Rescans the base path every `poll_seconds` until cancelled."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.refresh()
            except Exception:  # a bad scan must not end polling
                log.exception("scanning %s failed", self.base_path)

    async def refresh(self) -> None:
        """Loads new models and newer versions; unloads models whose directory is gone."""
        found = self._scan()
        for name, found_versions in sorted(found.items()):
            if name not in self.models:
                self.models[name] = ModelEntry(name)
                # a sample from the start, so that increase() sees the first failure
                metrics.MODEL_LOAD_FAILURES.labels(name).inc(0)
                metrics.BATCHER_FAILURES.labels(name).inc(0)
            entry = self.models[name]
            current = entry.served.version if entry.served else 0
            if current and current not in found_versions:
                current = 0  # the serving version was removed: roll back to the newest left
            for version in reversed(found_versions):  # newest first, down to the current
                if version <= current:
                    break
                if version not in entry.failures and await self._load_version(entry, version):
                    break
        for name in sorted(set(self.models) - set(found)):
            entry = self.models.pop(name)
            if entry.served:
                log.info("%s disappeared from %s: unloading version %d", name, self.base_path,
                         entry.served.version)
                self.on_health(name, False)
                self._drain(entry.served)
                metrics.MODEL_VERSION.remove(name)
        metrics.MODELS_SERVING.set(sum(1 for e in self.models.values() if e.served))

    def _scan(self) -> dict[str, list[int]]:
        """Model name -> its integer version directories (ascending), for every readable
        model directory that has one."""
        found_by_model = {}
        for model_dir in sorted(p for p in self.base_path.iterdir()
                                if p.is_dir() and not p.name.startswith(".")):
            try:
                found = versions(model_dir)
            except OSError as error:  # e.g. a volume's lost+found, unreadable to us
                log.warning("skipped %s: %s", model_dir, error)
                continue
            if found:
                found_by_model[model_dir.name] = found
            else:
                log.debug("no integer version directory under %s", model_dir)
        return found_by_model

    async def _load_version(self, entry: ModelEntry, version: int) -> bool:
        """Loads `version` and swaps it in; False (reported, recorded) if it failed."""
        path = self.base_path / entry.name / str(version)
        entry.loading = version
        try:
            served = await self._load(entry.name, version, path)
        except Exception as error:  # report it; the previous version (if any) keeps serving
            if isinstance(error, ContractError):  # the message says it all
                log.error("cannot serve %s version %d: %s", entry.name, version, error)
            else:
                log.exception("failed to load %s version %d from %s", entry.name, version,
                              path)
            entry.failures[version] = f"{type(error).__name__}: {error}"
            metrics.MODEL_LOAD_FAILURES.labels(entry.name).inc()
            return False
        finally:
            entry.loading = 0
        previous, entry.served, entry.task = entry.served, served, served.task
        settle_heap()
        metrics.MODEL_VERSION.labels(entry.name).set(version)
        self.on_health(entry.name, True)
        if previous:
            log.info("%s: version %d replaces version %d", entry.name, version,
                     previous.version)
            self._drain(previous)
        return True

    async def _load(self, name: str, version: int, path: Path) -> ServedModel:
        started = time.monotonic()
        metadata = read_metadata(path)
        check_version(metadata)
        task = self.tasks.get(metadata.get(Meta.TASK, ""))
        if task is None:
            raise ContractError(
                f"{path}/recur.json names task {metadata.get(Meta.TASK)!r}; this server serves "
                f"{sorted(self.tasks)} (a task of another package loads with --task-modules)")
        loaded = await asyncio.to_thread(tf.saved_model.load, str(path))
        signature_name = metadata.get(Meta.SIGNATURE, task.contract.signature.name)
        task.contract.check(loaded, signature_name)
        runner = SignatureRunner(loaded.signatures[signature_name], task.contract.signature,
                                 name)
        batching, decoder = self.per_model.get(name, self.batching), None
        if batching.scheduling == "step":
            if task.contract.begin is None:  # not a decoder: nothing to step
                batching = dataclasses.replace(batching, scheduling="request")
            elif has_step_functions(loaded):
                decoder = StepDecoder(name, loaded, task.contract.begin,
                                      batching.stream_interval_ms / 1000)
            else:
                log.warning("%s has no step functions (begin/advance): it is served with "
                            "request scheduling; re-export it for step scheduling", path)
                batching = dataclasses.replace(batching, scheduling="request")
        rows = task.warm_up(metadata, self.limits).merged()
        await asyncio.to_thread(self._warm_up, runner, decoder, rows)
        batcher = Batcher(name, runner, batching, decoder, input_length=row_length,
                          on_failure=lambda: self._batcher_failed(name, version))
        batcher.start()
        log.info("loaded %s version %d (%s, %s scheduling) from %s in %.1f s", name, version,
                 task.name, batching.scheduling, path, time.monotonic() - started)
        if metadata.get(Meta.XLA):
            log.info("%s version %d decodes compiled with XLA: each new shape of a decode "
                     "(number of running rows, beam width, %d-token bucket of source or "
                     "output length) is compiled once, about a second on a CPU, and that "
                     "decode waits meanwhile", name, version, XLA_BUCKET)
        if metadata.get(Meta.BF16_PROJECTION):
            log.info("%s version %d decodes with its output projection in bfloat16: fast "
                     "on CPUs with AMX and on GPUs with bfloat16 units, maybe slower "
                     "elsewhere", name, version)
        return ServedModel(name, version, path, task.name, metadata, batcher, loaded)

    @staticmethod
    def _warm_up(runner: SignatureRunner, decoder: StepDecoder | None, rows: list) -> None:
        """Runs one input through each path so the first client does not pay for tracing
        and TensorFlow's first runs (recording no metrics: it is not traffic)."""
        runner.run(rows)
        if decoder:
            try:
                decoder.warm_up(rows)
            except BaseException:
                decoder.close()  # its lanes' threads would wait for inputs forever
                raise

    def _batcher_failed(self, name: str, version: int) -> None:
        """The batcher of `name` `version` stopped on an error: health NOT_SERVING until
        the same version, loaded again with a new batcher, replaces it."""
        entry = self.models.get(name)
        if entry is None or entry.served is None or entry.served.version != version:
            return
        self.on_health(name, False)

        async def reload():
            if not await self._load_version(entry, version):  # reported; stays unhealthy
                log.error("%s version %d could not be reloaded after its batcher failed",
                          name, version)

        task = asyncio.get_running_loop().create_task(reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _drain(self, served: ServedModel) -> None:
        """Lets `served` finish its queued requests, then unloads it (in the background)."""
        async def drain():
            await served.batcher.close(drain=True)
            log.info("unloaded %s version %d", served.name, served.version)
            if served.name not in self.models:  # gone, not replaced: so is its queue
                metrics.QUEUE_DEPTH.remove(served.name)

        task = asyncio.get_running_loop().create_task(drain())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # once the drain's frame let go of the version, what only it held is garbage
        task.add_done_callback(lambda _: settle_heap())

    def get(self, name: str, version: int = 0) -> ServedModel:
        entry = self.models.get(name)
        if (entry is None or entry.served is None) and not self.loaded:
            raise StillLoading("the server is still loading its models; retry shortly")
        if entry is None or entry.served is None:
            known = sorted(n for n, e in self.models.items() if e.served)
            raise ModelNotFound(f"model {name!r} is not loaded; loaded models: {known}")
        if version and version != entry.served.version:
            raise ModelNotFound(f"model {name!r} version {version} is not loaded; "
                                f"loaded version: {entry.served.version}")
        return entry.served

    @property
    def ready(self) -> bool:
        return any(e.served for e in self.models.values())

    async def close(self) -> None:
        """Drains every model (after the server stopped taking RPCs)."""
        # A reload under way first: the version it loads must be drained too.
        await asyncio.gather(*self._background, return_exceptions=True)
        for entry in self.models.values():
            if entry.served:
                self._drain(entry.served)
        await asyncio.gather(*self._background, return_exceptions=True)
