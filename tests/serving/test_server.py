"""The development server answers as TF Serving does, through the official stubs."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import psutil
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc)

from serving.server import DEFAULT_MAX_CANDIDATES, count_candidates, list_versions, serve
from tests.serving.conftest import EXAMPLES, RANK_INPUTS, make_base_path, make_example

AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def stubs(model_server):
    channel = grpc.insecure_channel(model_server.target)
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def request(inputs, signature="", name="funnel", version=None, label=None, output_filter=()):
    req = predict_pb2.PredictRequest(output_filter=list(output_filter))
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    for key, value in inputs.items():
        req.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                 else tf.make_tensor_proto(value))
    return req


def examples_request(examples=EXAMPLES, **kwargs):
    return request({"examples": np.array(examples, dtype=object)}, **kwargs)


def outputs(response):
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def assert_same(actual, expected):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        value = value.numpy()
        if value.dtype == object:
            np.testing.assert_array_equal(actual[key], value)
        else:
            assert actual[key].dtype == value.dtype, key
            np.testing.assert_allclose(actual[key], value, rtol=1e-6, atol=1e-6)


def status_request(name="funnel", version=None):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    return req


def test_predict_equals_the_saved_model_in_process(stubs, reference):
    predict, _ = stubs
    response = predict.Predict(examples_request(), timeout=10)
    assert_same(outputs(response), reference.signatures["serving_default"](examples=tf.constant(EXAMPLES)))
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
        "funnel", 1, "serving_default")

    response = predict.Predict(request(RANK_INPUTS, signature="rank"), timeout=10)
    assert_same(outputs(response), reference.signatures["rank"](**{k: tf.constant(v) for k, v in RANK_INPUTS.items()}))
    assert response.model_spec.signature_name == "rank"

    filtered = predict.Predict(request(RANK_INPUTS, signature="rank", output_filter=["bucket"], version=1), timeout=10)
    assert list(filtered.outputs) == ["bucket"]
    stable = predict.Predict(examples_request(label="stable"), timeout=10)
    assert stable.model_spec.version.value == 1


def test_model_status_and_metadata(stubs):
    predict, models = stubs
    response = models.GetModelStatus(status_request(), timeout=10)
    [status] = response.model_version_status
    assert (status.version, status.state, status.status.error_code) == (1, AVAILABLE, 0)
    assert models.GetModelStatus(status_request(version=1), timeout=10).model_version_status[0].state == AVAILABLE
    for bad in (status_request(name="nope"), status_request(version=7)):
        with pytest.raises(grpc.RpcError) as e:
            models.GetModelStatus(bad, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "funnel"
    response = predict.GetModelMetadata(req, timeout=10)
    assert response.model_spec.version.value == 1
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    rank = signature_defs.signature_def["rank"]
    assert {k: v.dtype for k, v in rank.inputs.items()} == {
        "item_id": tf.string.as_datatype_enum, "price": tf.float32.as_datatype_enum, "age": tf.int64.as_datatype_enum}
    assert [d.size for d in rank.inputs["price"].tensor_shape.dim] == [-1, -1]
    assert set(signature_defs.signature_def["serving_default"].outputs) == {"score", "click", "item_id"}

    req.metadata_field[:] = ["signature_def", "other"]
    with pytest.raises(grpc.RpcError) as e:
        predict.GetModelMetadata(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _broadcast_tensor():
    proto = tf.make_tensor_proto(1.0, dtype=tf.float32)
    proto.tensor_shape.dim.add(size=1 << 30)
    proto.tensor_shape.dim.add(size=3)
    return proto  # one value, declared [2^30, 3]: TF would broadcast it


def _bad_tensor():
    proto = tf.make_tensor_proto(np.zeros([2, 3], np.float32))
    proto.tensor_content = proto.tensor_content[:-4]  # one float short
    return proto


MALFORMED = {
    "wrong dtype": (request(dict(RANK_INPUTS, price=RANK_INPUTS["price"].astype(np.float64)), signature="rank"),
                    grpc.StatusCode.INVALID_ARGUMENT, "Expects arg 'price' to be float32 but float64"),
    "missing input": (request({k: v for k, v in RANK_INPUTS.items() if k != "age"}, signature="rank"),
                      grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {age}"),
    "extra input": (request(dict(RANK_INPUTS, extra=np.ones([2, 3], np.float32)), signature="rank"),
                    grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {extra}"),
    "wrong rank": (request(dict(RANK_INPUTS, price=np.ones([6], np.float32)), signature="rank"),
                   grpc.StatusCode.INVALID_ARGUMENT, "not compatible"),
    "inconsistent shapes": (request(dict(RANK_INPUTS, price=np.ones([2, 4], np.float32)), signature="rank"),
                            grpc.StatusCode.INVALID_ARGUMENT, "Incompatible shapes"),
    "unparseable tensor": (request(dict(RANK_INPUTS, price=_bad_tensor()), signature="rank"),
                           grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: price"),
    "huge broadcast tensor": (request(dict(RANK_INPUTS, price=_broadcast_tensor()), signature="rank"),
                              grpc.StatusCode.INVALID_ARGUMENT, "is too large"),
    "undecodable example": (examples_request([EXAMPLES[0], b"\x07garbage"]),
                            grpc.StatusCode.INVALID_ARGUMENT, "Could not parse example input"),
    "undecodable non-utf8 example": (examples_request([b"\x07garbage\xff"]),
                                     grpc.StatusCode.INVALID_ARGUMENT, "does not parse"),
    "unknown model": (examples_request(name="nope"), grpc.StatusCode.NOT_FOUND,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": (examples_request(version=3), grpc.StatusCode.NOT_FOUND,
                        "Servable not found for request: Specific(funnel, 3)"),
    "unknown label": (examples_request(label="beta"), grpc.StatusCode.INVALID_ARGUMENT,
                      "Unrecognized servable version label: beta"),
    "label of an unknown model": (examples_request(name="nope", label="canary"), grpc.StatusCode.INVALID_ARGUMENT,
                                  "Unrecognized servable version label: canary"),
    "unknown signature": (examples_request(signature="nope"), grpc.StatusCode.INVALID_ARGUMENT,
                          'Serving signature name: "nope" not found in signature def'),
    "unknown output": (examples_request(output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT,
                       "output tensor alias not found in signature: nope"),
    "no model spec": (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_gets_the_status_tf_serving_gives_and_the_server_keeps_serving(stubs, case):
    predict, _ = stubs
    bad, code, message = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as e:
        predict.Predict(bad, timeout=10)
    assert e.value.code() == code
    assert message in e.value.details()
    assert predict.Predict(examples_request(), timeout=10).outputs["score"].tensor_shape.dim[0].size == len(EXAMPLES)


def test_unimplemented_methods(stubs):
    predict, _ = stubs
    with pytest.raises(grpc.RpcError) as e:
        predict.Classify(classification_pb2.ClassificationRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_concurrent_requests(stubs, reference):
    predict, _ = stubs
    expected = reference.signatures["rank"](**{k: tf.constant(v) for k, v in RANK_INPUTS.items()})
    with futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: predict.Predict(request(RANK_INPUTS, signature="rank"), timeout=10),
                                  range(32)))
    for response in responses:
        assert_same(outputs(response), expected)


def test_an_oversize_message_is_refused_by_grpc(tmp_path, saved_models):
    with serve(make_base_path(tmp_path, saved_models), port=0, max_message_bytes=4096) as server:
        server.wait_until_available(30)
        with grpc.insecure_channel(server.target) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as e:
                predict.Predict(examples_request([make_example(1.0, "x" * 100)] * 100), timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert predict.Predict(examples_request(), timeout=10).model_spec.version.value == 1


def test_the_server_listens_on_loopback_unless_told_otherwise(model_server):
    from pipeline.cli import build_parser

    assert build_parser().parse_args(["serve", "--model-base-path", "x"]).host == "127.0.0.1"
    # model_server is started with serve()'s default host
    listening = {c.laddr.ip for c in psutil.Process().net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == model_server.port}
    assert listening and {ip.removeprefix("::ffff:") for ip in listening} == {"127.0.0.1"}, listening


def test_candidate_count_of_a_request():
    assert count_candidates(examples_request()) == (7, "input 'examples' [7]")
    assert count_candidates(request(RANK_INPUTS, signature="rank")) == (6, "input 'item_id' [2,3]")
    assert count_candidates(request({"x": np.zeros([4, 9], np.float32)})) == (4, "input 'x' [4,9]")


def test_too_many_candidates_are_refused_naming_the_cap(stubs):
    predict, _ = stubs
    cap = DEFAULT_MAX_CANDIDATES
    with pytest.raises(grpc.RpcError) as e:
        predict.Predict(examples_request(EXAMPLES * (cap // len(EXAMPLES) + 1)), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {cap} per request (--max-candidates)" in e.value.details()
    assert f"has {(cap // len(EXAMPLES) + 1) * len(EXAMPLES)} candidates (input 'examples'" in e.value.details()
    # `rank` counts its [R, N] item_ids; the shape is checked before anything is decoded.
    item_id = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"a"])
    item_id.tensor_shape.dim.add(size=2)
    item_id.tensor_shape.dim.add(size=cap // 2 + 1)
    big = dict(RANK_INPUTS, item_id=item_id)
    with pytest.raises(grpc.RpcError) as e:
        predict.Predict(request(big, signature="rank"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"has {cap + 2} candidates (input 'item_id' [2,{cap // 2 + 1}])" in e.value.details()
    assert len(tf.make_ndarray(predict.Predict(examples_request(EXAMPLES), timeout=10).outputs["score"])) == 7


def test_the_candidate_cap_is_a_flag(tmp_path, saved_models):
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["serve", "--model-base-path", "x", "--max-candidates", "5"])
    assert args.max_candidates == 5
    assert build_parser().parse_args(["serve", "--model-base-path", "x"]).max_candidates == DEFAULT_MAX_CANDIDATES
    with serve(make_base_path(tmp_path, saved_models), port=0, poll_seconds=0, max_candidates=5) as server:
        server.wait_until_available(30)
        with grpc.insecure_channel(server.target) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as e:
                predict.Predict(examples_request(EXAMPLES[:6]), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 5 per request" in e.value.details()
            assert predict.Predict(examples_request(EXAMPLES[:5]), timeout=10).model_spec.version.value == 1


def _write_warmup(model_dir, req):
    os.makedirs(os.path.join(model_dir, "assets.extra"))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
    with tf.io.TFRecordWriter(os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def _push(base, model_dir, version, warmup_request=None):
    """The Pusher's way: copy to a hidden staging directory, then rename into place."""
    staging = os.path.join(base, f".tmp-{version}")
    shutil.copytree(model_dir, staging)
    if warmup_request is not None:
        _write_warmup(staging, warmup_request)
    os.rename(staging, os.path.join(base, str(version)))


def _served(predict, **spec):
    return predict.Predict(examples_request(**spec), timeout=10).model_spec.version.value


def _status(models, **spec):
    return {s.version: s.state for s in models.GetModelStatus(status_request(**spec), timeout=10).model_version_status}


def test_the_two_newest_versions_are_served_with_stable_and_canary_labels(tmp_path, saved_models):
    base = make_base_path(tmp_path, saved_models)
    with serve(base, port=0, poll_seconds=0.1) as server, grpc.insecure_channel(server.target) as channel:
        assert server.wait_until_available(30) == 1
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        before = outputs(predict.Predict(examples_request(), timeout=10))
        # One version: both labels are it (as serving.set_version_labels points them).
        assert [_served(predict, label=label) for label in ("stable", "canary")] == [1, 1]

        _push(base, saved_models[2], 2, warmup_request=examples_request())
        _wait_for(lambda: server.versions == [1, 2])
        assert _status(models) == {2: AVAILABLE, 1: AVAILABLE}
        assert [_served(predict), _served(predict, label="canary"), _served(predict, label="stable")] == [2, 2, 1]
        assert [_served(predict, version=1), _served(predict, version=2)] == [1, 2]
        response = predict.Predict(examples_request(label="canary"), timeout=10)
        assert not np.allclose(outputs(response)["score"], before["score"])  # version 2's weights
        assert_same(outputs(predict.Predict(examples_request(label="stable"), timeout=10)),
                    {k: tf.constant(v) for k, v in before.items()})

        # A staging directory alone is never loaded; a version whose warmup fails is skipped
        # and the labels stay on the loadable ones.
        shutil.copytree(saved_models[1], os.path.join(base, ".tmp-3"))
        _push(base, saved_models[1], 4, warmup_request=examples_request(signature="nope"))
        _wait_for(lambda: 4 in server.manager.states() and server.manager.states()[4][0] == END)
        [status] = models.GetModelStatus(status_request(version=4), timeout=10).model_version_status
        assert status.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "nope" in status.status.error_message
        time.sleep(0.3)
        assert server.versions == [1, 2] and 3 not in server.manager.states()
        assert [_served(predict, label="canary"), _served(predict, label="stable")] == [2, 1]
        assert sorted(list_versions(base)) == [1, 2, 4]

        # A newer good version: canary moves to it, stable to the old canary, 1 is unloaded.
        _push(base, saved_models[1], 5)
        _wait_for(lambda: server.versions == [2, 5])
        assert _status(models) == {5: AVAILABLE, 4: END, 2: AVAILABLE, 1: END}
        assert [_served(predict, label="canary"), _served(predict, label="stable")] == [5, 2]
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(examples_request(version=1), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "Servable not found for request: Specific(funnel, 1)" in e.value.details()

        # Deleting the newest version rolls back to the newest loadable ones.
        shutil.rmtree(os.path.join(base, "5"))
        _wait_for(lambda: server.versions == [1, 2])
        assert [_served(predict), _served(predict, label="stable")] == [2, 1]


def _missing_variables(version_dir):
    shutil.rmtree(os.path.join(version_dir, "variables"))


def _truncated_saved_model(version_dir):
    path = os.path.join(version_dir, "saved_model.pb")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


@pytest.mark.parametrize("corrupt, code, message", [
    (_missing_variables, grpc.StatusCode.NOT_FOUND, "variables"),
    (_truncated_saved_model, grpc.StatusCode.DATA_LOSS, "does not parse as a SavedModel (truncated or corrupt?)"),
], ids=["missing variables", "truncated saved_model.pb"])
def test_a_corrupted_version_is_refused_once_and_the_previous_one_keeps_serving(tmp_path, saved_models, caplog,
                                                                                  corrupt, code, message):
    base = make_base_path(tmp_path, saved_models)
    staging = os.path.join(base, ".tmp-2")
    shutil.copytree(saved_models[2], staging)
    corrupt(staging)
    with serve(base, port=0, poll_seconds=0.05) as server, grpc.insecure_channel(server.target) as channel:
        assert server.wait_until_available(30) == 1
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        with caplog.at_level(logging.INFO, logger="funnel.serving"):
            os.rename(staging, os.path.join(base, "2"))
            _wait_for(lambda: server.manager.states().get(2, (None,))[0] == END)
            time.sleep(0.3)  # six more polls: not retried, not logged again
        [status] = models.GetModelStatus(status_request(version=2), timeout=10).model_version_status
        assert (status.state, status.status.error_code) == (END, code.value[0]), status
        assert message in status.status.error_message
        failures = [r for r in caplog.records if "failed to load funnel version 2" in r.getMessage()]
        assert len(failures) == 1 and message in failures[0].getMessage()
        assert [r.getMessage() for r in caplog.records].count("loading funnel version 2 from " +
                                                              os.path.join(base, "2")) == 1
        assert server.versions == [1]
        assert [_served(predict), _served(predict, label="canary"), _served(predict, label="stable")] == [1, 1, 1]
        assert _status(models) == {2: END, 1: AVAILABLE}

        # The next good version is loaded beside 1; the refused one stays out of the labels.
        _push(base, saved_models[2], 3)
        _wait_for(lambda: server.versions == [1, 3])
        assert [_served(predict, label="canary"), _served(predict, label="stable")] == [3, 1]


def test_a_request_in_flight_finishes_on_its_version_while_that_version_is_unloaded(tmp_path, slow_model):
    base = os.path.join(str(tmp_path), "serving")
    shutil.copytree(slow_model, os.path.join(base, "1"))
    with serve(base, port=0, poll_seconds=0.05) as server, grpc.insecure_channel(server.target) as channel:
        assert server.wait_until_available(30) == 1
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        # long enough to outlast loading two versions on a loaded 2-core machine (2 s did not, once)
        in_flight = predict.Predict.future(request({"milliseconds": np.int64(8000)}, signature="sleep"), timeout=30)
        time.sleep(0.2)
        for version in (2, 3):
            _push(base, slow_model, version)
        _wait_for(lambda: server.versions == [2, 3])
        assert not in_flight.done() and server.manager.states()[1][0] == END  # unloaded meanwhile
        response = in_flight.result()
        assert response.model_spec.version.value == 1 and tf.make_ndarray(response.outputs["slept"]) == 8000
        quick = predict.Predict(request({"milliseconds": np.int64(0)}, signature="sleep"), timeout=10)
        assert quick.model_spec.version.value == 3


def test_funnel_serve_finishes_in_flight_requests_on_sigterm(tmp_path, slow_model):
    """SIGTERM: new calls are refused at once (UNAVAILABLE), the request in flight completes
    within --grace-seconds, and the process exits 0."""
    base = os.path.join(str(tmp_path), "serving")
    shutil.copytree(slow_model, os.path.join(base, "1"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model-base-path", base, "--port", "0",
         "--poll-seconds", "0.5", "--grace-seconds", "60"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(150, process.kill)  # never hang the suite on a silent server
    watchdog.start()
    try:
        line = process.stdout.readline()
        match = re.search(r"serving (127\.0\.0\.1:\d+) model funnel version 1 \(stable=1, canary=1\)", line)
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            [status] = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status_request(), timeout=10).model_version_status
            assert status.state == AVAILABLE
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            in_flight = predict.Predict.future(request({"milliseconds": np.int64(2000)}, signature="sleep"),
                                               timeout=30)
            time.sleep(0.3)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            quick = request({"milliseconds": np.int64(0)}, signature="sleep")
            while True:  # new calls are refused once the signal is handled ...
                with grpc.insecure_channel(match.group(1)) as late:
                    try:
                        prediction_service_pb2_grpc.PredictionServiceStub(late).Predict(quick, timeout=10)
                    except grpc.RpcError as e:  # CANCELLED: a call that raced the shutdown, not run either
                        assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e
                        break
                assert time.monotonic() - sent < 10, "still taking new requests 10 s after SIGTERM"
                time.sleep(0.05)
            assert not in_flight.done()  # ... while the one in flight still runs, and completes
            assert in_flight.result().model_spec.version.value == 1
            assert tf.make_ndarray(in_flight.result().outputs["slept"]) == 2000
        assert process.wait(timeout=50) == 0
        assert time.monotonic() - sent < 40  # it exits once the last request is done, not after the grace
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()


def test_serve_flags_num_versions_and_grace_seconds(tmp_path, capsys, monkeypatch):
    from pipeline.cli import build_parser, main
    from serving.server import DEFAULT_GRACE_SECONDS, DEFAULT_NUM_VERSIONS

    args = build_parser().parse_args(["serve", "--model-base-path", "x"])
    assert (args.num_versions, args.grace_seconds) == (DEFAULT_NUM_VERSIONS, DEFAULT_GRACE_SECONDS)
    args = build_parser().parse_args(["serve", "--model-base-path", "x", "--num-versions", "1", "--grace-seconds", "0"])
    assert (args.num_versions, args.grace_seconds) == (1, 0.0)
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # `funnel serve` configures logging
    for flag, value, message in (("--grace-seconds", "-1", "--grace-seconds must not be negative"),
                                 ("--num-versions", "0", "(--num-versions) must be at least 1, got 0"),
                                 # gRPC would bind -1 as 65535 and 70000 as 4464
                                 ("--port", "-1", "--port must be between 0 (any free port) and 65535, got -1"),
                                 ("--port", "70000", "--port must be between 0 (any free port) and 65535, got 70000"),
                                 ("--workers", "0", "--workers must be at least 1, got 0"),
                                 ("--max-message-bytes", "0", "--max-message-bytes must be at least 1, got 0"),
                                 ("--max-candidates", "0", "--max-candidates must be at least 1, got 0")):
        command = ["serve", "--model-base-path", str(tmp_path)] + (["--port", "0"] if flag != "--port" else [])
        assert main(command + [flag, value]) == 2
        assert message in capsys.readouterr().err
