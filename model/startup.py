"""Quiet TensorFlow start-up: no banner lines unless a log level asks for them.

TensorFlow 2.21's native libraries print their start-up lines (oneDNN, cudart_stub,
cuInit...) through Abseil before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL
cannot hide them. Entry points call `import_tensorflow()` before anything imports
TensorFlow: the import, device discovery and oneDNN's one-time complaint about int64
and bool tensors (printed at the first graph that transposes one, i.e. every RNN) then
run with the process's stderr sent to /dev/null. TF_CPP_MIN_LOG_LEVEL=0 or 1 keeps
them, for debugging.
"""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager, nullcontext


@contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(initialize: bool = True) -> None:
    """Imports TensorFlow (and tensorflow-text's ops) and discovers devices, quietly
    unless TF_CPP_MIN_LOG_LEVEL is 0 or 1. Python errors still surface: stderr is back
    before they are raised. `initialize=False` leaves the runtime uninitialised (a
    multi-worker strategy must configure it first); call `warm_up()` after that."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    with _quiet():
        import tensorflow as tf
        import tensorflow_text  # noqa: F401

        tf.config.list_physical_devices()
    if initialize:
        warm_up()


def warm_up(intra_op_threads: int = 0, inter_op_threads: int = 0) -> None:
    """Sets TensorFlow's thread pools (0: its default, one thread per core), which only
    an uninitialised runtime takes, then runs the first graph that transposes an int64
    tensor, quietly: oneDNN complains about it once per process. It initialises
    TensorFlow's runtime."""
    import tensorflow as tf

    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    with _quiet():
        tf.function(lambda t: tf.transpose(t))(tf.zeros([2, 3], tf.int64))


def settle_heap() -> None:
    """Collects garbage once, then exempts every object alive from later collections.

    A loaded model's graphs and functions are hundreds of thousands of Python objects;
    without this, the collector's full passes scan them all holding the GIL, and
    everything else in the process waits: in the server, pauses of 255-271 ms put the
    refusals' p99 at 222 ms instead of 10; in a benchmark's client process, which loads
    the export for its in-process figures, passes of 130-245 ms stalled its gRPC
    callbacks and sends. Run after each load and unload (one such pause then): what an
    unloaded model left in reference cycles is collected, the rest stays exempt."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _quiet():
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") not in ("0", "1")
    return _native_stderr_silenced() if quiet else nullcontext()
