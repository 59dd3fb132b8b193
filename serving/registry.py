"""Model registry: finds exports under the base path (TF Serving's layout), loads the
newest version of each model, warms it up and hands out its batcher.

EXPORT_BASE/<model-name>/<integer version>/ with a SavedModel and recur.json.
Directories that are not integers (e.g. an export still being staged) are
ignored; a version that fails to load is reported (log, metric, ListModels)
and the other models keep serving.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the SentencePiece ops the exports use

from model.export import read_metadata, versions
from serving import metrics
from serving.batcher import Batcher, BatchingConfig
from serving.runners import DecodeKey, translate_batch

log = logging.getLogger(__name__)

RUNNERS = {"translate": translate_batch}


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
    failures: dict[int, str] = field(default_factory=dict)


class ModelRegistry:
    def __init__(self, base_path: Path, batching: BatchingConfig):
        self.base_path = Path(base_path)
        self.batching = batching
        self.models: dict[str, ModelEntry] = {}
        self.loaded = False  # True once load_all has finished

    async def load_all(self) -> None:
        """Loads the newest version of every model directory, one after another."""
        if not self.base_path.is_dir():
            raise FileNotFoundError(
                f"--model-base-path {self.base_path} does not exist: train a model first "
                "(python -m training.run translate --export-base ...) or point to its exports")
        for model_dir in sorted(p for p in self.base_path.iterdir()
                                if p.is_dir() and not p.name.startswith(".")):
            try:
                found = versions(model_dir)
            except OSError as error:  # e.g. a volume's lost+found, unreadable to us
                log.warning("skipped %s: %s", model_dir, error)
                continue
            if not found:
                log.warning("no integer version directory under %s: skipped", model_dir)
                continue
            entry = self.models.setdefault(model_dir.name, ModelEntry(model_dir.name))
            path = model_dir / str(found[-1])
            try:
                entry.served = await self._load(model_dir.name, found[-1], path)
                entry.task = entry.served.task
                metrics.MODEL_VERSION.labels(model_dir.name).set(found[-1])
            except Exception as error:  # report and keep serving the others
                log.exception("failed to load %s version %d", model_dir.name, found[-1])
                entry.failures[found[-1]] = f"{type(error).__name__}: {error}"
                metrics.MODEL_LOAD_FAILURES.labels(model_dir.name).inc()
        self.loaded = True

    async def _load(self, name: str, version: int, path: Path) -> ServedModel:
        started = time.monotonic()
        metadata = read_metadata(path)
        task = metadata.get("task", "")
        if task not in RUNNERS:
            raise ValueError(f"{path}/recur.json names task {task!r}; this server serves "
                             f"{sorted(RUNNERS)}")
        loaded = await asyncio.to_thread(tf.saved_model.load, str(path))
        signature = loaded.signatures[metadata.get("signature", task)]
        run = functools.partial(RUNNERS[task], signature)
        await asyncio.to_thread(self._warm_up, task, run)
        batcher = Batcher(name, run, self.batching)
        batcher.start()
        log.info("loaded %s version %d (%s) from %s in %.1f s", name, version, task, path,
                 time.monotonic() - started)
        return ServedModel(name, version, path, task, metadata, batcher, loaded)

    @staticmethod
    def _warm_up(task: str, run) -> None:
        """Runs one request through the graph so the first client does not pay for tracing."""
        if task == "translate":
            run(DecodeKey(2, 1, 0.6, 8, 2.0), ["warm up"])

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
        for entry in self.models.values():
            if entry.served:
                await entry.served.batcher.close()
