"""The Trainer module (`run_fn`) for architectures beyond the default, on the e2e world's
Transform output (`e2e_examples`): the exported SavedModel (Transform inside, no bias tower)
serves the heads' outputs on `serving_default` and `rank` alike."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features as F
from models import trainer
from models.mixtures import dtn_trim
from tests.models.batch import E2E_SMALL, NO_SEQUENCES
from tests.models.test_trainer_input import request_grouping
from pipeline.config import load_config
from serving import rank_request
from tests.serving.test_pushed_model_e2e import _rank, _serving_default, requests_of

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]  # `make test-all` and CI; not `make test`

# a small DTN of two modules per task and two shared ones (4-wide gates)
TRIM_SMALL = {"interaction_units": 8, "tower_units": [4],
              "interactions": [{"type": "mlp"}, {"type": "masknet", "block_units": 4, "mask_hidden": 8}]}


@pytest.fixture(scope="module")
def eval_requests(e2e_examples):
    return requests_of(e2e_examples[1])


def _dataset_factory(file_pattern, options, schema):
    return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema).TensorFlowDataset(options)


def _train(e2e_examples, tmp_path, model_section, trainer_overrides=None):
    _, root = e2e_examples
    transformed = glob.glob(os.path.join(root, "Transform", "transformed_examples", "*"))[0]
    config = load_config()
    fn_args = tfx.components.FnArgs(
        train_files=[os.path.join(transformed, "Split-train", "*")],
        eval_files=[os.path.join(transformed, "Split-eval", "*")],
        transform_output=glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))[0],
        serving_model_dir=str(tmp_path / "serving"), model_run_dir=str(tmp_path / "run"),
        data_accessor=tfx.components.DataAccessor(tf_dataset_factory=_dataset_factory,
                                                  record_batch_factory=None, data_view_decode_fn=None),
        custom_config={"transform": config["transform"],
                       "model": {**model_section, **E2E_SMALL, **NO_SEQUENCES},
                       "trainer": {**config["trainer"], "batch_size": 256, "eval_batches": 2,
                                   "epochs": 1, "learning_rate": 0.001,
                                   **(trainer_overrides or {})}})
    trainer.run_fn(fn_args)
    return str(tmp_path / "serving"), str(tmp_path / "run")


def _check_trim(serving_dir, run_dir, threshold):
    """The Trainer's cut equals DTN-trim's rule on the weights it recorded, and the exported
    network has exactly the modules it kept."""
    with open(os.path.join(run_dir, trainer.TRIM_FILE)) as f:
        trim = json.load(f)
    weights = trim["mean_gate_weights"]
    members = {gate: list(w) for gate, w in weights.items()}
    assert trim["trimmed"] == dtn_trim.modules_to_trim({g: list(w.values()) for g, w in weights.items()},
                                                       members, threshold)
    assert len(members) == 4
    with open(os.path.join(serving_dir, "saved_model.pb"), "rb") as f:
        graph = f.read()
    assert trim["retrained"] == bool(trim["trimmed"])
    every = {n for names in members.values() for n in names}
    for name in every:
        assert (name.encode() in graph) == (name not in trim["trimmed"]), name
    # the full DTN's curves in `logs`, a retrained one's in a TensorBoard run of its own
    trained = ["logs"] + ([os.path.join("logs", trainer.TRIMMED_LOGS)] if trim["retrained"] else [])
    for logs in trained:
        assert len(glob.glob(os.path.join(run_dir, logs, "train", "events.out.tfevents.*"))) == 1, logs
    assert os.path.exists(os.path.join(run_dir, "logs", trainer.TRIMMED_LOGS)) == trim["retrained"]
    return trim


# Through `run_fn` on real examples, the architectures whose heads or training differ from the
# DMT's (the shared run trains the DMT): each preset's network is also exported and checked on a
# synthetic batch in test_presets.py, which is where the other mixtures (HMoE, PLE, ...) are.
@pytest.mark.parametrize("section,outputs", [
    ({"preset": "esm2", "mixture": {"type": "ple", "levels": 1}}, {"click", "daction", "order", "cvr", "score"}),
    # DTN-trim: trains, cuts the modules under a threshold above an even share, retrains
    ({"preset": "dtn-trim", "mixture": {**TRIM_SMALL, "trim_threshold": 0.4}},
     {"click", "order", "score"}),
])
def test_run_fn_exports_each_architecture(e2e_examples, eval_requests, tmp_path, section, outputs):
    # DTN-trim trains twice: at most 30 steps each (the split has about 20 batches of 256)
    serving_dir, run_dir = _train(e2e_examples, tmp_path, section,
                                  {"steps_per_epoch": 30} if section["preset"] == "dtn-trim" else None)
    with open(os.path.join(serving_dir, "saved_model.pb"), "rb") as f:
        assert b"bias_tower" not in f.read()
    with open(os.path.join(run_dir, trainer.CALIBRATION_FILE)) as f:
        calibration = json.load(f)
    assert calibration["preset"] == section["preset"] and calibration["reference_bias_logit"] is not None
    assert os.path.isdir(os.path.join(run_dir, trainer.LOGGED_MODEL_DIR))
    if section["preset"] == "dtn-trim":
        trim = _check_trim(serving_dir, run_dir, section["mixture"]["trim_threshold"])
        # the shared modules get about 1/4 of each 4-wide `others` gate: under 0.4
        assert trim["trimmed"]
    loaded = tf.saved_model.load(serving_dir)
    assert set(loaded.signatures) == {"serving_default", "rank", "transform_features"}
    compared = 0
    for examples in eval_requests[:5]:
        request = rank_request.from_examples(examples)
        ranked = _rank(loaded, request)
        expected = _serving_default(loaded, rank_request.to_examples(request))
        assert set(ranked) == set(expected) == outputs
        for name, value in ranked.items():
            np.testing.assert_allclose(value.reshape(-1), expected[name].reshape(-1), atol=1e-5, rtol=0)
        compared += len(examples)
    assert compared > 20


def test_dtn_trim_that_cuts_nothing_serves_the_dtn_it_trained(e2e_examples, tmp_path):
    section = {"preset": "dtn-trim", "mixture": {**TRIM_SMALL, "trim_threshold": 1e-6}}
    serving_dir, run_dir = _train(e2e_examples, tmp_path, section,
                                  {"steps_per_epoch": 5, "epochs": 2, "learning_rate": [0.001, 0.0001]})
    trim = _check_trim(serving_dir, run_dir, section["mixture"]["trim_threshold"])
    assert trim["trimmed"] == [] and not trim["retrained"]
    # one training (its curves only, `_check_trim`), and fit.json times the training it serves:
    # both epochs, the second at its own rate
    with open(os.path.join(run_dir, trainer.FIT_FILE)) as f:
        fit = json.load(f)
    assert fit["train_steps"] == 2 * 5 and fit["final_learning_rate"] == pytest.approx(0.0001)


def test_the_fusion_network_trains_per_request_on_the_pipeline_examples(e2e_examples, eval_requests, tmp_path):
    """The Transform's request key and the Trainer's request-grouped batches on real examples: most
    requests reach the fusion network's loss whole, and the gate trains and is exported."""
    _, root = e2e_examples
    transformed = glob.glob(os.path.join(root, "Transform", "transformed_examples", "*"))[0]
    tft_output = tft.TFTransformOutput(glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))[0])
    accessor = tfx.components.DataAccessor(tf_dataset_factory=_dataset_factory, record_batch_factory=None,
                                           data_view_decode_fn=None)
    files = [os.path.join(transformed, "Split-train", "*")]
    batches = [features[F.REQUEST_KEY].numpy().ravel() for features, _ in trainer._dataset(
        files, accessor, tft_output, [F.CLICK, F.ORDER], 256, shuffle=True, seed=0, by_request=True)]
    several, whole, pairs = request_grouping(batches)
    print(f"{several} requests of several candidates: {whole:.3f} whole in one batch of 256, "
          f"{pairs:.3f} of their pairs in one batch")
    # a block's edge cuts requests (~19 candidates on the default world: 0.70 whole, 0.84 of the pairs)
    assert several > 100 and whole > 0.6 and pairs > 0.75

    section = {"preset": "dnn-base", "fusion": {"type": "network", "period": 2}}
    serving_dir, run_dir = _train(e2e_examples, tmp_path, section)
    with open(os.path.join(run_dir, trainer.FIT_FILE)) as f:
        fit = json.load(f)
    # a gate step after every second batch
    assert fit["fusion_steps"] == fit["train_steps"] // 2 and fit["fusion_steps"] > 0
    assert sorted(fit["validation_auc"]) == [F.CLICK, F.ORDER]  # the epoch's validation, per task
    loaded = tf.saved_model.load(serving_dir)
    assert set(loaded.signatures) == {"serving_default", "rank", "transform_features"}
    # the trained gate's per-user weights, not the untrained product click x order (weights 1 and 1)
    served = _serving_default(loaded, eval_requests[0])
    assert not np.allclose(served["score"], served[F.CLICK] * served[F.ORDER], rtol=1e-3, atol=0)
