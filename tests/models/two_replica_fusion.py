"""The fusion network's alternate training under MirroredStrategy with two replicas (two logical
CPUs), for tests/models/test_fusion_network.py. In its own process: TF fixes the logical
devices when it first initialises them.

    python -m tests.models.two_replica_fusion OUT.json

Fits tests/models/test_fusion_network.py's DNN(Base) with the gate at `period` 3 on 7 batches and
writes {"changed": per batch whether the gate's weights changed, "fusion_steps", "main_steps",
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
    import tf_keras as keras

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tests.models.batch import make_batch
    from tests.models.test_fusion_network import _model, _with_requests

    batches = [_with_requests(make_batch(32, seed=s)) for s in range(BATCHES)]
    dataset = tf.data.Dataset.from_generator(lambda: iter(batches),
                                             output_signature=tf.data.Dataset.from_tensors(batches[0]).element_spec)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model(period=PERIOD)
        model.build_for_training(*batches[0])  # as the Trainer does: fit cannot create the gate here
    gate = model.network.fusion.trainable_variables
    changed = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.before = [v.numpy().copy() for v in gate]

        def on_train_batch_end(self, batch, logs=None):
            changed.append(any(not np.array_equal(a, v.numpy()) for a, v in zip(self.before, gate)))

    history = model.fit(dataset, verbose=0, callbacks=[Watch()]).history
    result = {"replicas": strategy.num_replicas_in_sync, "changed": changed,
              "fusion_steps": int(model.fusion_optimizer.iterations.numpy()),
              "main_steps": int(model.optimizer.iterations.numpy()),
              "fusion_loss": float(history["fusion_loss"][0]),
              "replicas_agree": all(np.array_equal(v.values[0].numpy(), v.values[1].numpy()) for v in gate)}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
