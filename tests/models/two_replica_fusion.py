"""The fusion network's alternate training under MirroredStrategy with two replicas (two logical
CPUs), for tests/models/test_fusion_network.py. In its own process: TF fixes the logical
devices when it first initialises them.

    python -m tests.models.two_replica_fusion OUT.json

Fits tests/models/test_fusion_network.py's DNN(Base) with the gate at `period` 3 on 7 batches and
writes {"replicas", "changed": per batch whether the gate's weights changed, "fusion_steps",
"fusion_loss", "replicas_agree": every gate variable the same on both replicas}.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
PERIOD, BATCHES = 3, 7


def main(out_path: str) -> None:
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tests.models.batch import make_batch
    from tests.models.test_fusion_network import GateWatch, _dataset, _model, _with_requests

    batches = [_with_requests(make_batch(32, seed=s)) for s in range(BATCHES)]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model(period=PERIOD)
        model.build_for_training(*batches[0])  # as the Trainer does: fit cannot create the gate here
    watch = GateWatch()
    history = model.fit(_dataset(batches), verbose=0, callbacks=[watch]).history
    gate = model.network.fusion.trainable_variables
    result = {"replicas": strategy.num_replicas_in_sync, "changed": watch.changed,
              "fusion_steps": int(model.fusion_optimizer.iterations.numpy()),
              "fusion_loss": float(history["fusion_loss"][0]),
              "replicas_agree": all(np.array_equal(v.values[0].numpy(), v.values[1].numpy()) for v in gate)}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
