"""Distributed training: the `trainer.distribution` section as a `tf.distribute` strategy, and
which worker writes what.

    trainer:
      batch_size: 512          # the global batch: split evenly over every replica of every worker
      distribution:
        strategy: default      # default | mirrored | multi_worker_mirrored | parameter_server
        devices: null          # mirrored: e.g. [/gpu:0, /gpu:1]; null = every visible GPU (else the CPU)
        communication: auto    # multi_worker_mirrored all-reduce: auto | ring | nccl
        auto_shard: auto       # multi-worker input sharding: auto | file | data | off
        min_shard_bytes: 262144  # parameter_server: variables larger than this are split ...
        max_shards: null       # ... into at most this many shards (null: one per ps task)

- `default`: no strategy (one device), exactly the code path and results of a run without the key.
- `mirrored`: one host, several GPUs; each batch is split across them, gradients all-reduced.
- `multi_worker_mirrored`: several hosts, synchronous; the cluster comes from TF_CONFIG. Every
  worker trains on its share of the files (`auto_shard`) with identical weights; only the chief
  (task `chief`, else `worker` 0) writes the exported model, the run's files and TensorBoard logs.
  The other workers export to a temporary directory beside it and delete it (TF's documented
  save pattern: saving may need every worker), then wait for the chief.
- `parameter_server`: asynchronous, variables (large embedding tables) sharded over the `ps`
  tasks; the `chief` task runs `run_fn` as the coordinator, `worker` and `ps` tasks serve. Needs
  `trainer.steps_per_epoch`.
"""

import json
import os
from typing import Any, Callable, Dict, Optional, Tuple

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "parameter_server")
# The strategies that train on a cluster of several tasks (TF_CONFIG).
MULTI_WORKER = ("multi_worker_mirrored", "parameter_server")
COMMUNICATION = {"auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
                 "ring": tf.distribute.experimental.CommunicationImplementation.RING,
                 "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}
AUTO_SHARD = {"auto": tf.data.experimental.AutoShardPolicy.AUTO,
              "file": tf.data.experimental.AutoShardPolicy.FILE,
              "data": tf.data.experimental.AutoShardPolicy.DATA,
              "off": tf.data.experimental.AutoShardPolicy.OFF}
DEFAULTS = {"strategy": "default", "devices": None, "communication": "auto", "auto_shard": "auto",
            "min_shard_bytes": 256 << 10, "max_shards": None}
# The `trainer:` section's key of these settings.
SECTION_KEY = "distribution"
# The directory a non-chief worker writes into instead of the chief's (beside it, then deleted).
WORKER_TEMP_PREFIX = "workertemp_"


def settings(trainer_section: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """`trainer.distribution` over the defaults, checked: ValueError naming the key otherwise."""
    section = (trainer_section or {}).get(SECTION_KEY) or {}
    if not isinstance(section, dict):
        raise ValueError(f"`trainer.{SECTION_KEY}` must be a mapping, got {section!r}")
    unknown = set(section) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"`trainer.{SECTION_KEY}`: unknown keys {sorted(unknown)}; keys: {sorted(DEFAULTS)}")
    merged = {**DEFAULTS, **section}
    for key, allowed in (("strategy", STRATEGIES), ("communication", COMMUNICATION), ("auto_shard", AUTO_SHARD)):
        if merged[key] not in allowed:
            raise ValueError(f"`trainer.{SECTION_KEY}.{key}`: unknown value {merged[key]!r}; "
                             f"one of: {', '.join(allowed)}")
    devices = merged["devices"]
    if devices is not None and not (isinstance(devices, list) and all(isinstance(d, str) for d in devices)):
        raise ValueError(f"`trainer.{SECTION_KEY}.devices` must be null or a list of device names")
    for key in ("min_shard_bytes", "max_shards"):
        if not ((isinstance(merged[key], int) and merged[key] >= 1) or (key == "max_shards" and merged[key] is None)):
            raise ValueError(f"`trainer.{SECTION_KEY}.{key}` must be an integer >= 1"
                             + (" or null (one shard per ps task)" if key == "max_shards" else ""))
    if merged["strategy"] == "parameter_server" and not (trainer_section or {}).get("steps_per_epoch"):
        raise ValueError(f"`trainer.{SECTION_KEY}.strategy: parameter_server` needs `trainer.steps_per_epoch` "
                         "(the coordinator cannot tell when the workers' datasets end)")
    return merged


def cluster_resolver() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    """The cluster and this task, from the TF_CONFIG environment variable (JSON: `cluster`
    {task type: [host:port, ...]} and `task` {type, index}), as set by Vertex AI, Kubeflow's
    TFJob or by hand."""
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def create_strategy(section: Dict[str, Any], resolver=None) -> tf.distribute.Strategy:
    """The strategy of a checked section (`settings`); `default` is TF's default strategy,
    whose scope changes nothing."""
    kind = section["strategy"]
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=section["devices"])
    if kind == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver or cluster_resolver(),
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=COMMUNICATION[section["communication"]]))
    resolver = resolver or cluster_resolver()
    num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=section["min_shard_bytes"], max_shards=section["max_shards"] or max(num_ps, 1))
    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def _task(strategy: tf.distribute.Strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The task that writes: the only one outside a cluster, else `chief`, else `worker` 0 when
    the cluster has no `chief` (TF's rule)."""
    task_type, task_id, cluster = _task(strategy)
    return (task_type in (None, "chief")
            or (task_type == "worker" and task_id == 0 and "chief" not in cluster))


def write_path(path: str, strategy: tf.distribute.Strategy) -> str:
    """Where this task writes what belongs at `path`: `path` on the chief, else the same name
    under a temporary directory beside it (remove it with `remove_worker_temp`)."""
    if is_chief(strategy):
        return path
    _, task_id, _ = _task(strategy)
    parent, name = os.path.split(path.rstrip("/"))
    return os.path.join(parent, f"{WORKER_TEMP_PREFIX}{task_id}", name)


def remove_worker_temp(path: str, strategy: tf.distribute.Strategy) -> None:
    """Deletes the temporary directory `write_path` gave a non-chief task for `path`."""
    if not is_chief(strategy):
        temp = os.path.dirname(write_path(path, strategy))
        if tf.io.gfile.exists(temp):
            tf.io.gfile.rmtree(temp)


def wait_for_all_workers(strategy: tf.distribute.Strategy) -> None:
    """A barrier: returns once every worker got here (an all-reduce), so that no worker's
    Trainer step ends (TFX then checks the exported model exists) before the chief's export."""
    if is_multi_worker(strategy) and not is_parameter_server(strategy):  # PSS: only the coordinator writes
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """The tasks that read training input: the cluster's `chief` and `worker` tasks (1 without one)."""
    _, _, cluster = _task(strategy)
    return max(1, len(cluster.get("chief", ())) + len(cluster.get("worker", ())))


def auto_shard_policy(section: Dict[str, Any], num_files: Optional[int], workers: int):
    """The tf.data auto-shard policy of `auto_shard`. `auto` with fewer input files than
    workers is DATA: TF's AUTO tries FILE first and fails the step ("the dataset only has 1
    file(s), which is not enough for the required 2 shards") instead of falling back, which
    is what a small Transform output written as one file per split would hit."""
    name = section["auto_shard"]
    if name == "auto" and num_files is not None and num_files < workers:
        name = "data"
    return AUTO_SHARD[name]


def shard_input(dataset: tf.data.Dataset, section: Dict[str, Any], strategy: tf.distribute.Strategy,
                num_files: Optional[int] = None):
    """The dataset with the configured auto-shard policy when several workers read it (FILE:
    each worker reads its share of the files, at least one each; DATA: every worker reads
    everything and keeps its share of the batches; AUTO: FILE when there are `num_files` >=
    workers, else DATA). Unchanged otherwise."""
    if not is_multi_worker(strategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = auto_shard_policy(section, num_files, num_workers(strategy))
    return dataset.with_options(options)


def is_parameter_server(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


def training_input(dataset: tf.data.Dataset, make_dataset: Callable[[int], tf.data.Dataset], batch_size: int,
                   section: Dict[str, Any], strategy: tf.distribute.Strategy, num_files: Optional[int] = None):
    """What `model.fit` trains on: `dataset` (batches of the global `batch_size`; sharded per
    `shard_input`), or under `parameter_server` a DatasetCreator of `make_dataset(batch)` (one pass
    over the training data): each worker reads its share at the per-replica batch, repeated
    (`steps_per_epoch` ends each epoch; TF's parameter server training guide)."""
    if not is_parameter_server(strategy):
        return shard_input(dataset, section, strategy, num_files)
    import tf_keras as keras  # here: the pipeline's definition imports this module, not Keras

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = make_dataset(context.get_per_replica_batch_size(batch_size))
        return batches.shard(context.num_input_pipelines, context.input_pipeline_id).repeat()

    return keras.utils.experimental.DatasetCreator(per_worker)


def validation_input(dataset: tf.data.Dataset, make_dataset: Callable[[int], tf.data.Dataset], batch_size: int,
                     num_batches: int, section: Dict[str, Any], strategy: tf.distribute.Strategy,
                     num_files: Optional[int] = None) -> Tuple[Any, Optional[int]]:
    """What `model.fit` validates on after each epoch, and its `validation_steps`.

    The first `num_batches` batches of `dataset` (sharded per `shard_input`), steps None: Keras
    runs them all. Under `parameter_server` the coordinator schedules evaluation steps on the
    workers (Keras' inline evaluation), which needs a per-worker dataset and a step count: a
    DatasetCreator where each worker reads its share of the first `num_batches` batches of
    `make_dataset(batch)`, repeated, and as many steps as there are such batches (at most
    `num_batches`; counted here, the eval split may be smaller). Steps go to whichever worker is
    free, so with one worker every batch counts once, with several about once. None, None for
    an empty eval split."""
    if not is_parameter_server(strategy):
        return shard_input(dataset.take(num_batches), section, strategy, num_files), None
    import tf_keras as keras  # here: the pipeline's definition imports this module, not Keras

    steps = int(dataset.take(num_batches).reduce(tf.constant(0, tf.int64), lambda count, *_: count + 1))
    if steps == 0:
        return None, None  # nothing to validate on: the steps would wait for data forever

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = make_dataset(context.get_per_replica_batch_size(batch_size)).take(num_batches)
        if steps >= context.num_input_pipelines:  # else a worker's share would be empty: all read all
            batches = batches.shard(context.num_input_pipelines, context.input_pipeline_id)
        return batches.repeat()

    return keras.utils.experimental.DatasetCreator(per_worker), steps


def serve_if_not_coordinator(section: Dict[str, Any]) -> bool:
    """Under `parameter_server`, a `worker` or `ps` task runs a TF server until the job ends
    (the chief drives it; TF's parameter server training). True when this task served."""
    if section["strategy"] != "parameter_server":
        return False
    resolver = cluster_resolver()
    if resolver.task_type not in ("worker", "ps"):
        return False
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()
    return True


def tf_config(cluster: Dict[str, list], task_type: str, index: int) -> str:
    """The TF_CONFIG value of one task (what a scheduler sets; tests and local runs)."""
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
