"""An in-process parameter server cluster (TF's guide: servers for 1 worker and 2 ps tasks in
this process) and the strategy `models.distribution` builds for it, for
tests/models/test_distribution.py (and Keras' validation during `fit` there); prints what the
test checks as JSON. In its own process: connecting to a cluster changes the process's
TensorFlow context for good.

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
        "table": placement(table), "small": placement(small),
        "validation": validation(section, strategy), "lazy_adam_rows": lazy_adam_rows(section, strategy)}))


def validation(section, strategy) -> dict:
    """A logistic regression fitted for one epoch with `distribution.validation_input`'s first 3
    of 5 eval batches of 8 (the last two with flipped labels): the validation loss Keras logged,
    the same loss computed here from the trained weights, and the steps for 3, 10 and 0 batches."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from models import distribution

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    y[24:] = 1.0 - y[24:]  # batches 3 and 4: would change the loss if they were read

    def make_dataset(batch_size):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", input_shape=(3,))])
        model.compile(keras.optimizers.SGD(1.0), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    data, steps = distribution.validation_input(make_dataset(8), make_dataset, 8, 3, section, strategy)
    history = model.fit(distribution.training_input(make_dataset(8), make_dataset, 8, section, strategy),
                        epochs=1, steps_per_epoch=2, validation_data=data, validation_steps=steps, verbose=0)
    kernel, bias = model.get_weights()
    p = 1.0 / (1.0 + np.exp(-(x[:24] @ kernel + bias)))
    expected = float(np.mean(-(y[:24] * np.log(p) + (1.0 - y[:24]) * np.log(1.0 - p))))
    return {"steps": steps, "val_loss": history.history["val_loss"][-1], "expected_val_loss": expected,
            "val_auc": history.history["val_auc"][-1],
            "steps_when_fewer": distribution.validation_input(make_dataset(8), make_dataset, 8, 10, section,
                                                              strategy)[1],
            "when_empty": list(distribution.validation_input(make_dataset(8).take(0), make_dataset, 8, 3,
                                                             section, strategy))}


def lazy_adam_rows(section, strategy) -> dict:
    """An embedding table sharded over the two ps tasks, fitted with lazy_adam one step on ids 3
    and 600 (one per shard), then one step on ids 7 and 905: the rows each step changed (Keras'
    Adam would move 3 and 600 again in the second, by their momentum), and the table's shards."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from models import distribution, optimizers

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.layers.Embedding(1000, 8, input_length=1), keras.layers.Flatten(),
                                  keras.layers.Dense(1)])
        model.compile(optimizers.create("lazy_adam", 0.1), "mse")
    table = model.layers[0].embeddings
    shards = getattr(table, "variables", [table])

    def step(ids):
        def make_dataset(batch_size):
            x = np.array([[i] for i in ids] * 4, np.int64)
            return tf.data.Dataset.from_tensor_slices((x, np.ones((len(x), 1), np.float32))).batch(batch_size)

        before = np.concatenate([v.numpy() for v in shards])
        model.fit(distribution.training_input(make_dataset(8), make_dataset, 8, section, strategy),
                  epochs=1, steps_per_epoch=1, verbose=0)
        after = np.concatenate([v.numpy() for v in shards])
        return [int(i) for i in np.flatnonzero(np.any(after != before, axis=1))]

    return {"changed": [step([3, 600]), step([7, 905])], "shards": len(shards)}

if __name__ == "__main__":
    main()
