"""Multi-worker training (`trainer.distribution`, models/distribution.py): two worker processes on
loopback ports train the Trainer's `run_fn` (a small DMT with the fusion network) on the e2e
pipeline's Transform output; the all-reduce keeps their weights identical and only the chief
exports."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models import distribution
from pipeline.config import load_config
from tests.models.batch import E2E_SMALL, NO_SEQUENCES
from tests.ports import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]  # `make test-all` and CI; not `make test`

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 3
TIMEOUT_SECONDS = 2700  # generous: the workers took 29 min on this 2-core machine under a load of 7


def _start_workers(spec_path, out_dirs):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(out_dirs))]}
    processes = []
    for index, out in enumerate(out_dirs):
        os.makedirs(out)
        env = {**os.environ, "TF_CONFIG": distribution.tf_config(cluster, "worker", index),
               "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
        with open(os.path.join(out, "log.txt"), "w") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "tests.models.distributed_worker", spec_path, out],
                                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes


def _tail(out):
    with open(os.path.join(out, "log.txt")) as f:
        return f.read()[-3000:]


def _write_spec(root, distribution_section, path, model=None) -> str:
    """The worker scripts' spec: the e2e world's Transform output, a small DMT (`model`
    overriding it), STEPS steps."""
    config = load_config()
    spec = {"transformed": glob.glob(os.path.join(root, "Transform", "transformed_examples", "*"))[0],
            "transform_graph": glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))[0],
            "custom_config": {"transform": config["transform"],
                              "model": {"preset": "dmt", **E2E_SMALL, **(model or {})},
                              "trainer": {**config["trainer"], "batch_size": 64, "eval_batches": 1, "epochs": 1,
                                          "steps_per_epoch": STEPS, "distribution": distribution_section}}}
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def test_two_workers_train_identical_weights_and_only_the_chief_exports(e2e_examples, tmp_path):
    _, root = e2e_examples
    # without sequences (tests/models/batch.py NO_SEQUENCES): the all-reduce is the subject here; the
    # parameter-server test below keeps them, for the sharded recency and item tables. With the
    # fusion network at period 2: its gate steps after step 2, in cross-replica context, on the
    # request-grouped train split
    spec_path = _write_spec(root, {"strategy": "multi_worker_mirrored"}, str(tmp_path / "spec.json"),
                            {**NO_SEQUENCES, "fusion": {"type": "network", "period": 2}})
    chief, worker = str(tmp_path / "worker0"), str(tmp_path / "worker1")
    processes = _start_workers(spec_path, [chief, worker])
    try:
        for process, out in zip(processes, (chief, worker)):
            assert process.wait(timeout=TIMEOUT_SECONDS) == 0, _tail(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    weights = [np.load(os.path.join(out, "weights.npz")) for out in (chief, worker)]
    assert int(weights[0]["steps"]) == int(weights[1]["steps"]) == STEPS
    assert sorted(weights[0].files) == sorted(weights[1].files) and len(weights[0].files) > 10
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    # the chief exports the served model, the logged-behaviour model and the run's files ...
    assert os.path.isfile(os.path.join(chief, "serving", "saved_model.pb"))
    assert os.path.isfile(os.path.join(chief, "run", "logged_model", "saved_model.pb"))
    with open(os.path.join(chief, "run", "fit.json")) as f:
        fit = json.load(f)
    assert fit["train_steps"] == STEPS and fit["fusion_steps"] == STEPS // 2
    assert sorted(fit["validation_auc"]) == ["click", "order"]  # validated after the epoch
    # ... the other worker nothing: its temporary exports are gone
    assert not os.path.exists(os.path.join(worker, "serving"))
    left = [os.path.relpath(os.path.join(d, n), worker) for d, _, names in os.walk(worker) for n in names]
    assert sorted(left) == ["log.txt", "weights.npz"], left


def test_parameter_server_trains_the_dmt_and_the_coordinator_exports_it(e2e_examples, tmp_path):
    """`strategy: parameter_server` end to end: the coordinator (chief) runs `run_fn` against a
    worker and two ps tasks (in its process, tests/models/parameter_server_training.py): the
    variables (the fusion network's gate's too) live on the ps tasks, the worker runs
    `steps_per_epoch` steps and the validation after them, and the coordinator exports a model
    that serves."""
    import tensorflow as tf

    _, root = e2e_examples
    spec_path = _write_spec(root, {"strategy": "parameter_server", "min_shard_bytes": 1024},
                            str(tmp_path / "spec.json"), {"fusion": {"type": "network", "period": 2}})
    out = str(tmp_path / "coordinator")
    os.makedirs(out)
    with open(os.path.join(out, "log.txt"), "w") as log:
        process = subprocess.run([sys.executable, "-m", "tests.models.parameter_server_training", spec_path, out],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_SECONDS,
                                 env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.returncode == 0, _tail(out)
    assert int(np.load(os.path.join(out, "weights.npz"))["steps"]) == STEPS
    with open(os.path.join(out, "run", "fit.json")) as f:
        fit = json.load(f)
    assert fit["fusion_steps"] == STEPS // 2  # the gate, on the ps tasks too, stepped
    # validation during fit, run by the worker: an AUC per task on the eval batch
    assert sorted(fit["validation_auc"]) == ["click", "order"]
    assert all(0.0 <= auc <= 1.0 for auc in fit["validation_auc"].values())
    with open(os.path.join(out, "placement.json")) as f:
        placement = json.load(f)
    assert sorted(map(tuple, placement["devices"])) == [("ps", 0), ("ps", 1)]  # sharded over both, none local
    served = tf.saved_model.load(os.path.join(out, "serving")).signatures["serving_default"]
    assert "score" in served.structured_outputs
