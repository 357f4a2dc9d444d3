"""Daily rolling retraining end to end: a tiny simulated world written as daily partitions, the
real pipeline (LocalDagRunner) run for day D and then D + 1 with `trainer.warm_start`. The second
Trainer starts from the first run's final (blessed, pushed) weights, the second Evaluator gates
against the first model (and, held to an AUC gain no model can reach, refuses it: the serving
directory keeps the first version), and a re-run of D + 1 answers every step from the ML Metadata
cache (with the second model unblessed, the latest blessed model, and so every input, is unchanged)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2 as mlmd

from models import warm_start
from pipeline import local_runner, report
from pipeline.config import load_config
from simulation.simulator import simulate
from simulation.world import SimulationConfig
from tests.models.batch import E2E_SMALL, NO_SEQUENCES
from tests.saved_models import saved_variables

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]  # `make test-all` and CI; not `make test`

DAY_1, DAY_2 = "2026-10-03", "2026-10-04"  # the world's days: 2026-10-01 .. 2026-10-04
# one worker in-process: a tiny world does not pay for multi-processing's start-up
BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _config(end_date: str) -> dict:
    config = load_config()
    if end_date == DAY_2:
        config["evaluator"]["max_auc_drop"] = -1.0  # bless only an AUC gain of 1: never
    config["ingest"].update(end_date=end_date, train_days=2)
    config["trainer"].update(batch_size=256, eval_batches=2, warm_start=True, epochs=1, learning_rate=0.001)
    config["model"].update({**E2E_SMALL, **NO_SEQUENCES})  # a small DMT without sequences
    config["transform"]["statistics"] = False  # StatisticsGen still runs; not Transform's own
    config["baseline"] = None  # no DNN(Base) Trainer: a daily schedule needs no RelaImpr each day
    config["evaluator"]["min_auc"] = 0.0  # a tiny world's eval day: gate on the comparison only
    return config


def _executions(store, step: str):
    """The executions of `step`, oldest first."""
    context = store.get_context_by_type_and_name("node", f"{local_runner.PIPELINE_NAME}.{step}")
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _input(store, execution, key: str):
    """The artifact ids that went into `execution` as input `key`."""
    return [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
            if e.type == mlmd.Event.INPUT and e.path.steps[0].key == key]


def _output(store, execution, key: str):
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
           if e.type == mlmd.Event.OUTPUT and e.path.steps[0].key == key]
    return store.get_artifacts_by_id(ids)[0]


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    root = tmp_path_factory.mktemp("daily")
    simulate(str(root / "logs"), SimulationConfig(users=100, days=4, seed=5, partition_by_day=True))
    work = str(root / "work")
    for end_date in (DAY_1, DAY_2, DAY_2):  # the last: a re-run of the same date
        pipeline_root = local_runner.run_local(str(root / "logs"), work, _config(end_date), BEAM, enable_cache=True)
    return root, pipeline_root, report.run_store(pipeline_root)


def test_each_run_trains_and_evaluates_on_its_own_days(two_days):
    _, _, store = two_days
    reports = []
    for execution in _executions(store, "Ingest")[:2]:
        with open(os.path.join(_output(store, execution, "ingest_report").uri, "ingest_report.json")) as f:
            reports.append(json.load(f))
    for ingest in reports:
        assert ingest["balanced"] and ingest["examples"]["train"] > 0 and ingest["examples"]["eval"] > 0
    assert [(r["window"]["train"], r["window"]["eval"]) for r in reports] == [
        (["2026-10-01", "2026-10-02"], [DAY_1, DAY_1]), (["2026-10-02", "2026-10-03"], [DAY_2, DAY_2])]
    first, second = (r["logs"]["impressions"] for r in reports)
    # the first run does not read day 4; the second reads day 1 as history for the features
    assert first["history"] == 0 and second["history"] > 0
    assert second["accepted"] == second["examples"] + second["history"]
    assert second["history"] + second["examples"] > first["examples"]


def test_second_run_starts_from_the_first_runs_final_weights(two_days):
    _, _, store = two_days
    first, second = _executions(store, "Trainer")[:2]
    first_model = _output(store, first, "model")
    assert _input(store, first, "base_model") == []  # no blessed model yet: a cold start
    assert _input(store, second, "base_model") == [first_model.id]
    final = warm_start.read_npz(os.path.join(first_model.uri, warm_start.WARM_START_DIR, warm_start.WEIGHTS_FILE))
    with open(os.path.join(first_model.uri, warm_start.WARM_START_DIR, warm_start.MANIFEST_FILE)) as f:
        manifest = json.load(f)["weights"]
    initial = warm_start.read_npz(os.path.join(_output(store, second, "model_run").uri, warm_start.INITIAL_WEIGHTS_FILE))
    assert len(initial) == len(final) == len(manifest) > 20
    second_vocab = os.path.join(_output(store, second, "model").uri, warm_start.WARM_START_DIR, warm_start.VOCABULARY_DIR)
    tables = 0
    for start, end, entry in zip(initial, final, manifest):
        if entry["vocabulary"] is None:
            np.testing.assert_array_equal(start, end, err_msg=entry["name"])
            continue
        # an embedding table: today's token t starts with yesterday's row of t
        old = _tokens(os.path.join(first_model.uri, warm_start.WARM_START_DIR, warm_start.VOCABULARY_DIR,
                                   entry["vocabulary"]))
        new = _tokens(os.path.join(second_vocab, entry["vocabulary"]))
        shared = [(new.index(t), old.index(t)) for t in set(new) & set(old)]
        assert shared  # most of a tiny world's tokens change with the window; some stay
        to, frm = map(list, zip(*shared))
        np.testing.assert_array_equal(start[to], end[frm], err_msg=entry["name"])
        tables += 1
    assert tables >= 4  # item, category, brand, shop (and the bias tower's category table)


def _tokens(path):
    with open(path, "rb") as f:
        return f.read().splitlines()


def test_the_first_runs_final_weights_are_the_pushed_models(two_days):
    root, _, store = two_days
    first_model = _output(store, _executions(store, "Trainer")[0], "model")
    final = warm_start.read_npz(os.path.join(first_model.uri, warm_start.WARM_START_DIR, warm_start.WEIGHTS_FILE))
    versions = sorted(v for v in os.listdir(root / "work" / "serving") if v.isdigit())
    pushed = tf.saved_model.load(str(root / "work" / "serving" / versions[0]))
    for variable in saved_variables(pushed.serving.network):
        value = variable.numpy()
        assert any(a.shape == value.shape and np.array_equal(a, value) for a in final), variable.name


def test_second_evaluator_gates_against_the_first_model(two_days):
    _, _, store = two_days
    first_model = _output(store, _executions(store, "Trainer")[0], "model")
    first, second = _executions(store, "Evaluator")[:2]
    assert _input(store, first, "baseline_model") == []
    assert _input(store, second, "baseline_model") == [first_model.id]
    # TFMA computed the candidate's AUC change against the baseline: the gate's change threshold
    first_run = tfma.load_metrics(_output(store, first, "evaluation").uri)
    second_run = tfma.load_metrics(_output(store, second, "evaluation").uri)
    assert not any(kv.key.is_diff for m in first_run for kv in m.metric_keys_and_values)
    diffs = {kv.key.name for m in second_run for kv in m.metric_keys_and_values if kv.key.is_diff}
    assert "auc" in diffs


def test_the_gate_refuses_the_second_model_and_serving_keeps_the_first(two_days):
    root, _, store = two_days
    blessings = [_output(store, e, "blessing") for e in _executions(store, "Evaluator")[:2]]
    assert [b.custom_properties["blessed"].int_value for b in blessings] == [1, 0]
    assert len([v for v in os.listdir(root / "work" / "serving") if v.isdigit()]) == 1


def test_rerun_of_the_same_date_reuses_every_step(two_days):
    _, _, store = two_days
    for step in ("Ingest", "StatisticsGen", "Transform", "Trainer", "Evaluator"):
        states = [e.last_known_state for e in _executions(store, step)]
        assert states[:2] == [mlmd.Execution.COMPLETE] * 2, step  # a new date never reuses yesterday's
        assert states[2] == mlmd.Execution.CACHED, step


def test_a_run_without_baseline_is_reported_without_relaimpr(two_days):
    root, pipeline_root, store = two_days
    result = report.evaluate(store, str(root / "logs"))
    assert set(result["rows"]) == {"model", "logged"} and result["rela_impr"] == result["rela_impr_served"] == {}
    assert result["models"][result["rows"]["model"]]["click"]["auc"] > 0
    assert "RelaImpr over" not in report.table(result)
    assert store.get_context_by_type_and_name("node", f"{local_runner.PIPELINE_NAME}.BaselineTrainer") is None
