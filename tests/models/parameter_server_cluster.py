"""An in-process parameter server cluster (TF's guide: servers for 1 worker and 2 ps tasks in
this process) and the strategy `models.distribution` builds for it, for
tests/models/test_distribution.py; prints what the test checks as JSON. In its own process:
connecting to a cluster changes the process's TensorFlow context for good.

    python -m tests.models.parameter_server_cluster
"""

import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def start_cluster() -> list:
    """Servers for 1 worker and 2 ps tasks on loopback ports, and TF_CONFIG naming this process
    the chief (the coordinator); returns the servers (they run while referenced)."""
    import tensorflow as tf

    from models import distribution
    from tests.ports import free_ports

    worker, ps0, ps1, chief = (f"127.0.0.1:{port}" for port in free_ports(4))
    cluster = {"chief": [chief], "worker": [worker], "ps": [ps0, ps1]}
    os.environ["TF_CONFIG"] = distribution.tf_config(cluster, "chief", 0)
    spec = tf.train.ClusterSpec(cluster)
    return [tf.distribute.Server(spec, job_name=job, task_index=index, protocol="grpc", start=True)
            for job, index in (("worker", 0), ("ps", 0), ("ps", 1))]


def main() -> None:
    import tensorflow as tf

    from models import distribution

    servers = start_cluster()
    section = distribution.settings({"steps_per_epoch": 2, "distribution": {
        "strategy": "parameter_server", "min_shard_bytes": 1024}})
    strategy = distribution.create_strategy(section)
    with strategy.scope():
        table = tf.Variable(tf.zeros([1000, 8]), name="embedding_table")  # 32 kB: one shard per ps
        small = tf.Variable(tf.zeros([4]), name="bias")  # 16 bytes < min_shard_bytes: whole
    def placement(variable):
        return [[list(v.shape), tf.DeviceSpec.from_string(v.device).job, tf.DeviceSpec.from_string(v.device).task]
                for v in getattr(variable, "variables", [variable])]  # a ShardedVariable's shards

    print(json.dumps({
        "parameter_server": distribution.is_parameter_server(strategy),
        "num_ps": strategy.extended._num_ps, "num_workers": strategy.extended._num_workers,
        "chief": distribution.is_chief(strategy), "servers": len(servers),
        "table": placement(table), "small": placement(small)}))

if __name__ == "__main__":
    main()
