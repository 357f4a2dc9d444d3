"""The Trainer's `run_fn` under `parameter_server` on an in-process cluster (TF's guide: servers
for 1 worker and 2 ps tasks in this process, this process the chief, i.e. the coordinator), for
tests/models/test_distributed_training.py. In its own process: connecting to a cluster changes
the process's TensorFlow context for good.

    python -m tests.models.parameter_server_training SPEC.json OUT_DIR

SPEC.json and OUT_DIR as tests/models/distributed_worker.py's; also writes OUT_DIR/placement.json
(the ps task of each shard of the model's variables).
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def main(spec_path: str, out_dir: str) -> None:
    import tensorflow as tf

    from tests.models import distributed_worker
    from tests.models.parameter_server_cluster import start_cluster

    servers = start_cluster()
    model = distributed_worker.main(spec_path, out_dir)
    placement = sorted({(tf.DeviceSpec.from_string(shard.device).job, tf.DeviceSpec.from_string(shard.device).task)
                        for v in model.variables for shard in getattr(v, "variables", [v])})  # ShardedVariable
    with open(os.path.join(out_dir, "placement.json"), "w") as f:
        json.dump({"servers": len(servers), "devices": placement}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # as distributed_worker: skip TensorFlow's slow teardown
