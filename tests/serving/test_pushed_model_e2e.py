"""The pushed SavedModel of the e2e pipeline as TF Serving sees it: signatures, no bias tower,
`rank` equal to `serving_default`, warmup records."""

import collections
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from models import features as F
from serving import rank_request, warmup
from tests.saved_models import saved_variables

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loaded(pushed_model):
    return tf.saved_model.load(pushed_model)


@pytest.fixture(scope="module")
def eval_requests(e2e_run):
    return requests_of(e2e_run[1])


def requests_of(pipeline_root: str) -> list:
    """The run's serialized eval examples grouped by request id (in file order)."""
    files = sorted(glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-eval", "*")))
    groups = collections.OrderedDict()
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        groups.setdefault(example.features.feature[F.REQUEST_ID].bytes_list.value[0], []).append(record.numpy())
    return list(groups.values())


def _rank(loaded, request):
    outputs = loaded.signatures["rank"](**{name: tf.constant(value) for name, value in request.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def _serving_default(loaded, examples):
    outputs = loaded.signatures["serving_default"](examples=tf.constant(examples))
    return {name: value.numpy() for name, value in outputs.items()}


def test_saved_model_cli_lists_the_signatures_and_no_bias_tower(pushed_model):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", pushed_model, "--all"], capture_output=True, text=True,
                           check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    for signature in ("serving_default", "rank", "transform_features"):
        assert f"signature_def['{signature}']" in shown
    assert "inputs['examples']" in shown and "inputs['click_sequence_item_id']" in shown
    assert "bias_tower" not in shown
    # The checkpoint keys are object paths; the variables' layer names live in the SavedModel.
    names = [v.name for v in saved_variables(tf.saved_model.load(pushed_model).serving.network)]
    assert any("immoe" in n for n in names) and any("interest_transformer" in n for n in names)
    assert not [n for n in names if "bias_tower" in n]
    with open(os.path.join(pushed_model, "saved_model.pb"), "rb") as f:
        assert b"bias_tower" not in f.read()


def test_rank_equals_serving_default_on_the_same_candidates(loaded, eval_requests):
    compared = 0
    for examples in eval_requests[:10]:
        request = rank_request.from_examples(examples)
        ranked = _rank(loaded, request)
        expected = _serving_default(loaded, rank_request.to_examples(request))
        assert set(ranked) == set(expected) == {"click", "order", "score"}
        for name, value in ranked.items():
            assert value.shape == (1, len(examples))
            np.testing.assert_allclose(value.reshape(-1), expected[name].reshape(-1), atol=1e-5, rtol=0)
        compared += len(examples)
    assert compared > 50


def test_rank_with_200_candidates_and_several_requests(loaded, eval_requests):
    pool = [e for examples in eval_requests for e in examples]
    big = rank_request.from_examples(pool[:200], context_index=7)
    assert rank_request.num_candidates(big) == 200
    batch = rank_request.stack([big, rank_request.from_examples(pool[200:400], context_index=3),
                                rank_request.from_examples(pool[400:600], context_index=0)])
    ranked = _rank(loaded, batch)
    expected = _serving_default(loaded, rank_request.to_examples(batch))
    for name, value in ranked.items():
        assert value.shape == (3, 200)
        np.testing.assert_allclose(value.reshape(-1), expected[name].reshape(-1), atol=1e-5, rtol=0)
    # a request alone or batched with others gets the same scores
    alone = _rank(loaded, big)
    np.testing.assert_allclose(alone["score"][0], ranked["score"][0], atol=1e-6, rtol=0)
    assert np.ptp(ranked["score"][0]) > 0


def test_warmup_records_cover_both_signatures_and_run(pushed_model, loaded):
    logs = warmup.read_warmup(pushed_model)
    sizes = collections.defaultdict(list)
    for log in logs:
        request = log.predict_log.request
        first = request.inputs["examples" if request.model_spec.signature_name == "serving_default" else F.ITEM_ID]
        sizes[request.model_spec.signature_name].append(tf.make_ndarray(first).shape[-1])
    assert sizes == {"serving_default": list(warmup.EXAMPLE_BATCH_SIZES), "rank": list(warmup.RANK_CANDIDATES)}
    warmup.replay(pushed_model, logs, loaded)


@pytest.fixture(scope="module")
def pushed_server(pushed_model):
    from serving.server import serve

    server = serve(os.path.dirname(pushed_model), port=0, poll_seconds=1.0)
    server.wait_until_available(180)
    yield server
    server.stop()


def test_served_scores_equal_in_process_predict(pushed_server, pushed_model, e2e_run, eval_requests):
    from serving.batch_predict import score_examples
    from serving.client import FunnelClient

    _, pipeline_root = e2e_run
    files = sorted(glob.glob(os.path.join(pipeline_root, "Ingest", "examples", "*", "Split-eval", "*")))
    expected = score_examples(pushed_model, files).set_index("impression_id")
    examples = [e for request in eval_requests for e in request][:300]
    ids = [tf.train.Example.FromString(e).features.feature[F.IMPRESSION_ID].bytes_list.value[0].decode()
           for e in examples]
    with FunnelClient(pushed_server.target, timeout=30) as client:
        assert client.model_status() == [(int(os.path.basename(pushed_model)), "AVAILABLE")]
        served = client.predict_examples(examples)
        for name in ("click", "order", "score"):
            np.testing.assert_allclose(served[name].reshape(-1), expected.loc[ids, name].to_numpy(), atol=1e-6)
        request = rank_request.from_examples(eval_requests[0])
        ranked = client.predict(request, signature="rank")
        np.testing.assert_allclose(ranked["score"], _rank(tf.saved_model.load(pushed_model), request)["score"],
                                   atol=1e-6)


def test_server_answers_the_warmup_records(pushed_server, pushed_model):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(pushed_server.target, options=[("grpc.max_receive_message_length", 64 << 20)]))
    logs = warmup.read_warmup(pushed_model)
    for log in logs:
        response = stub.Predict(log.predict_log.request, timeout=60)
        assert response.model_spec.version.value == int(os.path.basename(pushed_model))
        assert set(response.outputs) == {"click", "order", "score"}
