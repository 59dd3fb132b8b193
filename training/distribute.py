"""Training on several devices or machines through tf.distribute: which strategy a run
uses, and which worker writes what.

`--strategy default` is TensorFlow's own placement (one device, a GPU if there is one);
`mirrored` is MirroredStrategy over every local GPU (synchronous data parallelism,
gradients all-reduced each step); `multiworker` is MultiWorkerMirroredStrategy across
processes or machines, set up by TF_CONFIG, or, without it, by `--workers` (every
worker's host:port, the same list on all) and this worker's index (`--worker-index`, or
$JOB_COMPLETION_INDEX, which a Kubernetes Indexed Job gives each pod). Worker 0 is the
chief: it alone writes the run directory and the export; the others keep their logs,
backups and weights in RUN_DIR/NAME/worker-INDEX/ and export nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass

import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distribution:
    strategy: tf.distribute.Strategy
    worker_index: int  # 0 = the chief
    workers: int

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0


@functools.cache
def distribution(strategy: str, workers: str, worker_index: int) -> Distribution:
    """The strategy of a run; one per process (a second call returns the first's). Call
    it before any other TensorFlow work: a multi-worker strategy configures the
    runtime's collective ops, which must come first."""
    if strategy == "default":
        return Distribution(tf.distribute.get_strategy(), 0, 1)
    if strategy == "mirrored":
        mirrored = tf.distribute.MirroredStrategy()
        log.info("MirroredStrategy over %d devices", mirrored.num_replicas_in_sync)
        return Distribution(mirrored, 0, 1)
    if workers:
        os.environ["TF_CONFIG"] = tf_config(workers, worker_index)
    if "TF_CONFIG" not in os.environ:
        raise ValueError("--strategy multiworker needs the cluster: --workers HOST:PORT,... "
                         "(with --worker-index or $JOB_COMPLETION_INDEX), or TF_CONFIG")
    multi = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = multi.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    index = resolver.task_id + (1 if "chief" in cluster and resolver.task_type == "worker"
                                else 0)
    count = sum(len(tasks) for tasks in cluster.values())
    log.info("MultiWorkerMirroredStrategy: worker %d of %d (%s)", index, count,
             "chief" if index == 0 else "not the chief: it exports nothing")
    return Distribution(multi, index, count)


def tf_config(workers: str, worker_index: int) -> str:
    """TF_CONFIG for worker `worker_index` of the comma-separated `workers`; -1 takes the
    index from $JOB_COMPLETION_INDEX."""
    hosts = [w.strip() for w in workers.split(",") if w.strip()]
    if worker_index < 0:
        if "JOB_COMPLETION_INDEX" not in os.environ:
            raise ValueError("--workers needs --worker-index (or $JOB_COMPLETION_INDEX)")
        worker_index = int(os.environ["JOB_COMPLETION_INDEX"])
    if not 0 <= worker_index < len(hosts):
        raise ValueError(f"worker index {worker_index} is not in 0..{len(hosts) - 1} "
                         f"(--workers lists {len(hosts)})")
    return json.dumps({"cluster": {"worker": hosts},
                       "task": {"type": "worker", "index": worker_index}})
