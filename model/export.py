"""Versioned, atomic SavedModel export in TF Serving's layout.

`EXPORT_BASE/<model-name>/<version>/` with integer versions. A version is
written into a hidden temporary directory beside its final place and renamed
only when complete, so a server scanning the base never sees half an export.
Each export carries `recur.json`: the task, its signature and the evaluation
figures, which the server reports through ListModels.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from model.contract import METADATA_FILE

log = logging.getLogger(__name__)


def versions(model_dir: Path) -> list[int]:
    """Integer version directories under a model directory, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


@dataclass
class StagedExport:
    """An export being written: `path` while staged, `final_path` once published."""

    path: Path
    metadata: dict = field(default_factory=dict)
    final_path: Path | None = None


@contextmanager
def staged_export(export_base: Path, model_name: str) -> Iterator[StagedExport]:
    """Yields a temporary directory to write a SavedModel into, then publishes it.

    On success the directory gets `recur.json` (from `.metadata`) and is renamed
    to the next integer version; on error it is removed and nothing is published.
    """
    model_dir = Path(export_base) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    staged = StagedExport(Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir)))
    try:
        yield staged
        (staged.path / METADATA_FILE).write_text(json.dumps(staged.metadata, indent=2) + "\n")
        version = (versions(model_dir) or [0])[-1] + 1
        final = model_dir / str(version)
        # Atomic on one filesystem; fails if a concurrent export published this version.
        os.rename(staged.path, final)
        os.chmod(final, 0o755)
        staged.final_path = final
        log.info("published %s", final)
    finally:
        if staged.path.exists():
            shutil.rmtree(staged.path, ignore_errors=True)


@contextmanager
def portable_kernels(model) -> Iterator[None]:
    """Makes Keras RNN layers trace their generic kernels instead of cuDNN's.

    On a GPU, Keras LSTM/GRU layers emit CudnnRNNV3, an op with no CPU kernel:
    an export traced that way would not load on a CPU-only server. Inside this
    context every RNN layer of `model` has `use_cudnn=False`; training is untouched.
    """
    layers = [layer for layer in model._flatten_layers() if hasattr(layer, "use_cudnn")]
    saved = [layer.use_cudnn for layer in layers]
    for layer in layers:
        layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, value in zip(layers, saved, strict=True):
            layer.use_cudnn = value


def read_metadata(version_dir: Path) -> dict:
    path = Path(version_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
