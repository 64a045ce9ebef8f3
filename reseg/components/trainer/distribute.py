"""Which tf.distribute strategy this process trains with, and whether it is the chief.

`model.fit` fails under `MultiWorkerMirroredStrategy` with Keras 3 (keras issue
20585), so reseg trains with one custom loop (`loop.py`) under every strategy:

- `default`: `tf.distribute.get_strategy()`, one device;
- `mirrored`: `MirroredStrategy` over the local GPUs;
- `multi_worker`: `MultiWorkerMirroredStrategy`, cluster and task from `TF_CONFIG`.

`auto` picks multi_worker when `TF_CONFIG` names more than one chief/worker task,
mirrored with more than one GPU, else default. A collective strategy must exist
before the process runs other TF ops and only once per process, so strategies
are created on first use and then reused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from reseg.errors import ConfigError

log = logging.getLogger(__name__)

_CACHE: dict[str, Cluster] = {}


@dataclass(frozen=True)
class Cluster:
    """The strategy of this process and its place in the cluster."""

    strategy: Any
    kind: str
    is_chief: bool
    task_type: str | None
    task_id: int
    num_workers: int
    worker_index: int = 0
    """Position of this task among the chief and workers (chief first): its input shard."""

    @property
    def replicas(self) -> int:
        """Replicas in sync over the whole cluster."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def local_replicas(self) -> int:
        """Replicas (devices) of this worker."""
        return max(1, self.replicas // self.num_workers)


def tf_config() -> dict[str, Any]:
    """The parsed `TF_CONFIG` environment variable ({} when unset)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); received {raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object, received {raw[:200]!r}")
    return value


def _workers(conf: dict[str, Any]) -> int:
    cluster = conf.get("cluster") or {}
    return sum(len(cluster.get(k) or []) for k in ("chief", "worker"))


def _is_chief(task_type: str | None, task_id: int, cluster: dict[str, Any]) -> bool:
    """The chief writes artifacts: task `chief`, else worker 0 when there is no chief."""
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def resolve_kind(kind: str) -> str:
    """`auto` made concrete from TF_CONFIG and the visible GPUs."""
    if kind != "auto":
        return kind
    if _workers(tf_config()) > 1:
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def get_cluster(kind: str = "auto") -> Cluster:
    """The strategy named by `train.distribute` (created once per process)."""
    kind = resolve_kind(kind)
    if kind in _CACHE:
        return _CACHE[kind]
    import tensorflow as tf

    conf = tf_config()
    task = conf.get("task") or {}
    task_type, task_id = task.get("type"), int(task.get("index", 0))
    if kind == "multi_worker":
        if _workers(conf) < 1 or task_type is None:
            raise ConfigError(
                "train.distribute: multi_worker needs TF_CONFIG with a cluster and a task, "
                f"received TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        task_type, task_id = resolver.task_type, int(resolver.task_id)
        spec = resolver.cluster_spec().as_dict()
        chief = _is_chief(task_type, task_id, spec)
        workers = _workers(conf)
        index = task_id + (len(spec.get("chief") or []) if task_type == "worker" else 0)
    elif kind in ("mirrored", "default"):
        local = (
            tf.distribute.MirroredStrategy() if kind == "mirrored" else tf.distribute.get_strategy()
        )
        strategy, chief, workers, task_type, task_id, index = local, True, 1, None, 0, 0
    else:
        raise ConfigError(
            f"train.distribute must be auto, default, mirrored or multi_worker, received {kind!r}"
        )
    cluster = Cluster(strategy, kind, chief, task_type, task_id, workers, index)
    log.info(
        "strategy %s: %d replica(s), %d worker(s)%s",
        kind,
        cluster.replicas,
        workers,
        f", this is {task_type} {task_id}{' (chief)' if chief else ''}" if workers > 1 else "",
    )
    _CACHE[kind] = cluster
    return cluster
