"""`trainer.distribution` (models/distribution.py): the checked section, the cluster read from
TF_CONFIG, which task writes where. (Training on two workers: test_distributed_training.py.)"""

import json
import os
import subprocess
import sys
import types

import pytest
import tensorflow as tf

from models import distribution
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_section_defaults_to_no_strategy_and_names_a_bad_key():
    assert distribution.settings({"batch_size": 512}) == distribution.DEFAULTS
    assert distribution.DEFAULTS["strategy"] == "default"
    assert distribution.create_strategy(distribution.DEFAULTS) is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match=r"`trainer.distribution.strategy`: unknown value 'horovod'; "
                                         r"one of: default, mirrored, multi_worker_mirrored, parameter_server"):
        distribution.settings({"distribution": {"strategy": "horovod"}})
    with pytest.raises(ValueError, match=r"unknown keys \['stategy'\]"):
        distribution.settings({"distribution": {"stategy": "mirrored"}})
    with pytest.raises(ValueError, match="auto_shard`: unknown value 'hash'"):
        distribution.settings({"distribution": {"strategy": "multi_worker_mirrored", "auto_shard": "hash"}})
    with pytest.raises(ValueError, match="needs `trainer.steps_per_epoch`"):
        distribution.settings({"distribution": {"strategy": "parameter_server"}})


def test_auto_sharding_reads_whole_data_when_there_are_fewer_files_than_workers():
    """TF's AUTO would fail a multi-worker step on a split written as one file (a small
    Transform output); `auto` then shards by data. An explicit policy is kept."""
    policy = tf.data.experimental.AutoShardPolicy
    auto = distribution.settings({"distribution": {"strategy": "multi_worker_mirrored"}})
    assert distribution.auto_shard_policy(auto, num_files=1, workers=2) == policy.DATA
    assert distribution.auto_shard_policy(auto, num_files=2, workers=2) == policy.AUTO
    assert distribution.auto_shard_policy(auto, num_files=None, workers=2) == policy.AUTO
    by_file = {**auto, "auto_shard": "file"}
    assert distribution.auto_shard_policy(by_file, num_files=1, workers=2) == policy.FILE


def test_create_pipeline_rejects_an_unknown_strategy_before_anything_runs(tmp_path):
    config = load_config()
    config["trainer"]["distribution"] = {"strategy": "horovod"}
    with pytest.raises(ValueError, match="unknown value 'horovod'"):
        create_pipeline("p", str(tmp_path / "root"), str(tmp_path / "logs"), str(tmp_path / "serving"), config)


def _as_task(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", distribution.tf_config(cluster, task_type, index))
    # what a strategy exposes of its cluster: MultiWorkerMirroredStrategy.cluster_resolver
    return types.SimpleNamespace(cluster_resolver=distribution.cluster_resolver())


def test_the_chief_writes_in_place_the_other_tasks_beside_it(monkeypatch):
    workers = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
    chief = _as_task(monkeypatch, workers, "worker", 0)
    assert distribution.is_chief(chief)
    assert distribution.write_path("gs://b/model/Format-Serving", chief) == "gs://b/model/Format-Serving"
    other = _as_task(monkeypatch, workers, "worker", 1)
    assert not distribution.is_chief(other)
    assert distribution.write_path("gs://b/model/Format-Serving/", other) == "gs://b/model/workertemp_1/Format-Serving"
    # with a `chief` task (Vertex AI's first worker pool), worker 0 is not the chief
    with_chief = {"chief": ["127.0.0.1:2221"], **workers}
    assert distribution.is_chief(_as_task(monkeypatch, with_chief, "chief", 0))
    assert not distribution.is_chief(_as_task(monkeypatch, with_chief, "worker", 0))
    monkeypatch.delenv("TF_CONFIG")
    assert distribution.is_chief(tf.distribute.get_strategy())


def test_the_parameter_server_cluster_comes_from_tf_config(monkeypatch):
    cluster = {"chief": ["127.0.0.1:2221"], "worker": ["127.0.0.1:2222", "127.0.0.1:2223"], "ps": ["127.0.0.1:2224"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "ps", "index": 0}}))
    resolver = distribution.cluster_resolver()
    assert (resolver.task_type, resolver.task_id) == ("ps", 0)
    assert resolver.cluster_spec().as_dict() == cluster


def test_parameter_server_splits_large_variables_over_the_ps_tasks_and_validates_during_fit():
    """The strategy built for an in-process cluster (1 worker, 2 ps; its own process): large
    variables (embedding tables) get one shard per ps task, small ones stay whole; `fit` under it
    validates on the worker (`validation_input`); lazy_adam updates a sharded table's rows."""
    result = subprocess.run([sys.executable, "-m", "tests.models.parameter_server_cluster"], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(shape, job) for shape, job, _ in built.pop("small")] == [([4], "ps")]
    # validation during fit: the worker evaluated exactly the first 3 batches, once each
    # lazy_adam on a sharded table: the looked-up rows of both shards move, no other row does
    assert built.pop("lazy_adam_rows") == {"changed": [[3, 600], [7, 905]], "shards": 2}
    validation = built.pop("validation")
    assert validation["steps"] == 3 and validation["val_auc"] > 0.8  # it learnt y = [x_0 > 0]
    assert validation["val_loss"] == pytest.approx(validation["expected_val_loss"], rel=1e-5)
    assert validation["steps_when_fewer"] == 5 and validation["when_empty"] == [None, None]
    assert built == {"parameter_server": True, "num_ps": 2, "num_workers": 1, "chief": True, "servers": 3,
                     "table": [[[500, 8], "ps", 0], [[500, 8], "ps", 1]]}
