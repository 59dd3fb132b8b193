"""Where a TensorFlow call's time goes, by op type, read off the profiler's own trace.

`op_times` runs a function under `tf.profiler` (the trace lands where TensorBoard's
profile plugin opens it: `tensorboard --logdir DIR`) and sums the duration of every op
the executor ran, by op type (`_MklMatMul`, `LogSoftmax`, ...), from the trace's XSpace
protobuf. With TensorFlow's default inter-op pool two ops may run at once and a kernel's
time then includes waiting for a core: with one inter-op thread the times add up to the
call's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf


def op_times(run: Callable[[], object], logdir: Path) -> Counter[str]:
    """Calls `run` once under the profiler, tracing into `logdir`; returns the seconds
    spent in each op type."""
    tf.profiler.experimental.start(str(logdir))
    try:
        run()
    finally:
        tf.profiler.experimental.stop()
    newest = max(logdir.glob("plugins/profile/*/*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    return ops_in_trace(newest.read_bytes())


def ops_in_trace(xspace: bytes) -> Counter[str]:
    """Seconds by op type in a serialised XSpace. An op's event is named
    `op/name:OpType`; the runtime's own events (`ExecutorState::Process`,
    `EagerLocalExecute: ...`), which contain the ops, are left out."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xspace)
    seconds: Counter[str] = Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name and " " not in name:
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps * 1e-12
    return seconds
