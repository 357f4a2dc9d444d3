"""FunnelClient and `funnel score` against the development server (and fakes for failures)."""

import base64
import json
import os
import socket
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from pipeline import cli
from serving.client import (FunnelClient, InvalidRequestError, ModelNotFoundError, RequestTooLargeError,
                            ServerUnavailableError, ServingError, ServingTimeoutError)
from serving.server import serve
from tests.serving.conftest import EXAMPLES, RANK_INPUTS, make_base_path, make_example

AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


@pytest.fixture(scope="module")
def client(model_server):
    with FunnelClient(model_server.target, timeout=10) as c:
        yield c


def _reference_rank(reference):
    return {k: v.numpy() for k, v in reference.signatures["rank"](
        **{k: tf.constant(v) for k, v in RANK_INPUTS.items()}).items()}


def _reference_examples(reference, examples=EXAMPLES):
    return {k: v.numpy() for k, v in reference.signatures["serving_default"](examples=tf.constant(examples)).items()}


def test_predict_converts_inputs_to_the_signature_dtypes(client, reference):
    expected = _reference_rank(reference)
    # Lists of Python numbers: price becomes float32 and age int64 because the signature says so.
    got = client.predict({"item_id": [[s.decode() for s in row] for row in RANK_INPUTS["item_id"]],
                          "price": RANK_INPUTS["price"].tolist(), "age": RANK_INPUTS["age"].tolist()},
                         signature="rank")
    assert got["score"].dtype == np.float32 and got["bucket"].dtype == np.int64
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6)
    np.testing.assert_array_equal(got["bucket"], expected["bucket"])

    got = client.predict_examples(EXAMPLES)
    expected = _reference_examples(reference)
    np.testing.assert_allclose(got["click"], expected["click"], rtol=1e-6)
    np.testing.assert_array_equal(got["item_id"], expected["item_id"])


def test_metadata_and_status(client):
    inputs = client.signature_inputs("rank")
    assert inputs == {"item_id": (tf.string, (None, None)), "price": (tf.float32, (None, None)),
                      "age": (tf.int64, (None, None))}
    assert client.signature_inputs() == {"examples": (tf.string, (None,))}
    assert client.model_status() == [(1, "AVAILABLE")]
    assert client.model_status(version=1) == [(1, "AVAILABLE")]


def test_errors_map_to_exceptions(client, model_server):
    with pytest.raises(InvalidRequestError, match="Missing but required: {age}"):
        client.predict({k: v for k, v in RANK_INPUTS.items() if k != "age"}, signature="rank")
    with pytest.raises(InvalidRequestError, match="float64 values cannot be sent as int64"):
        client.predict(dict(RANK_INPUTS, age=[[1.5, 2, 3], [4, 5, 6]]), signature="rank")
    with pytest.raises(InvalidRequestError, match="Could not parse example input"):
        client.predict_examples([b"\x07garbage"])
    with pytest.raises(ModelNotFoundError, match=r"model nope.*Latest\(nope\)"):
        FunnelClient(model_server.target, "nope").predict_examples(EXAMPLES)
    with pytest.raises(ModelNotFoundError, match="version 9"):
        FunnelClient(model_server.target, version=9).model_status()
    assert client.predict_examples(EXAMPLES[:1])["score"].shape == (1,)


def test_a_request_above_the_servers_limit(tmp_path, saved_models):
    with serve(make_base_path(tmp_path, saved_models), port=0, max_message_bytes=4096) as server:
        server.wait_until_available(30)
        with FunnelClient(server.target) as small:
            with pytest.raises(RequestTooLargeError):
                small.predict_examples([make_example(1.0, "x" * 100)] * 100)
            assert small.predict_examples(EXAMPLES)["score"].shape == (len(EXAMPLES),)


class _Flaky(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers `code` (UNAVAILABLE) `failures` times, then forwards to the real server."""

    def __init__(self, target, failures, delay=0.0, code=grpc.StatusCode.UNAVAILABLE):
        self.calls = 0
        self.failures = failures
        self.delay = delay
        self.code = code
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))

    def Predict(self, request, context):
        self.calls += 1
        time.sleep(self.delay)
        if self.calls <= self.failures:
            context.abort(self.code, "warming up")
        return self._stub.Predict(request)


def _start(servicer, port=0, model_servicer=None):
    server = grpc.server(futures.ThreadPoolExecutor(4))
    if servicer is not None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    if model_servicer is not None:
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("code,error,message", [
    (grpc.StatusCode.UNAVAILABLE, ServerUnavailableError, "after 2 attempt.*warming up"),
    # what a call that raced a server's shutdown gets: it did not run
    (grpc.StatusCode.CANCELLED, ServingError, "CANCELLED: warming up")])
def test_retries_unavailable_or_cancelled_then_succeeds_or_gives_up(model_server, reference, code, error, message):
    flaky = _Flaky(model_server.target, failures=2, code=code)
    server, target = _start(flaky)
    try:
        got = FunnelClient(target, retries=3, backoff=0.01).predict_examples(EXAMPLES)
        np.testing.assert_allclose(got["score"], _reference_examples(reference)["score"], rtol=1e-6)
        assert flaky.calls == 3

        flaky.calls = 0
        with pytest.raises(error, match=message) as raised:
            FunnelClient(target, retries=1, backoff=0.01).predict_examples(EXAMPLES)
        assert raised.value.code == code and flaky.calls == 2
    finally:
        server.stop(None)


def test_a_predict_past_its_deadline_is_not_retried(model_server):
    slow = _Flaky(model_server.target, failures=0, delay=0.5)
    server, target = _start(slow)
    try:
        with pytest.raises(ServingTimeoutError):
            FunnelClient(target, timeout=0.1, retries=3, backoff=0.01).predict_examples(EXAMPLES)
        time.sleep(0.5)
        assert slow.calls == 1
    finally:
        server.stop(None)


def test_waits_for_a_server_that_starts_late():
    class Status(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            status = get_model_status_pb2.ModelVersionStatus(version=5, state=AVAILABLE)
            return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])

    with socket.socket() as s:  # a free port, nobody listening yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = []
    timer = threading.Timer(0.5, lambda: started.append(_start(None, port, Status())[0]))
    timer.start()
    try:
        assert FunnelClient(f"127.0.0.1:{port}", retries=6, backoff=0.1).model_status() == [(5, "AVAILABLE")]
    finally:
        timer.join()
        for server in started:
            server.stop(None)

    begin = time.monotonic()
    with pytest.raises(ServerUnavailableError):  # nobody ever listens
        FunnelClient(f"127.0.0.1:{port}", retries=2, backoff=0.01).model_status()
    assert time.monotonic() - begin < 5


def test_funnel_score_examples(tmp_path, model_server, reference):
    for name, options in (("examples.tfrecord", None), ("examples.tfrecord.gz", "GZIP")):
        path = str(tmp_path / name)
        with tf.io.TFRecordWriter(path, options) as writer:
            for example in EXAMPLES:
                writer.write(example)
        out = tmp_path / f"{name}.jsonl"
        code = cli.main(["score", "--target", model_server.target, "--model", "funnel", "--examples", path,
                         "--batch-size", "3", "--out", str(out)])
        assert code == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        expected = _reference_examples(reference)
        assert len(rows) == len(EXAMPLES)
        assert [r["item_id"] for r in rows] == [v.decode() for v in expected["item_id"]]
        np.testing.assert_array_equal(np.array([r["score"] for r in rows], np.float32), expected["score"])
        np.testing.assert_array_equal(np.array([r["click"] for r in rows], np.float32), expected["click"])


def test_funnel_score_request(tmp_path, model_server, reference, capsys):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"signature_name": "rank", "inputs": {
        "item_id": [[s.decode() for s in row] for row in RANK_INPUTS["item_id"]],
        "price": RANK_INPUTS["price"].tolist(), "age": RANK_INPUTS["age"].tolist()}}))
    assert cli.main(["score", "--target", model_server.target, "--model", "funnel", "--request", str(request)]) == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    expected = _reference_rank(reference)
    np.testing.assert_array_equal(np.array(outputs["score"], np.float32), expected["score"])
    np.testing.assert_array_equal(np.array(outputs["bucket"]), expected["bucket"])

    # REST's unnamed inputs and {"b64": ...} strings, for a one-input signature.
    request.write_text(json.dumps({"inputs": [{"b64": base64.b64encode(e).decode()} for e in EXAMPLES]}))
    out = tmp_path / "out.json"
    assert cli.main(["score", "--target", model_server.target, "--model", "funnel", "--request", str(request),
                     "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.array(json.loads(out.read_text())["outputs"]["score"], np.float32),
                                  _reference_examples(reference)["score"])


def test_funnel_score_fails_clearly(tmp_path, model_server, capsys):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": {"examples": ["x"]}}))
    assert cli.main(["score", "--target", model_server.target, "--model", "nope", "--request", str(request)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Servable not found for request: Latest(nope)" in err
    with pytest.raises(SystemExit):
        cli.main(["score", "--target", model_server.target, "--model", "funnel", "--request", str(request), "--bogus"])
    # a missing examples file is named before any output is opened; a file that is not TFRecords
    # gets tf.data's reason without its graph-node prefix
    out = tmp_path / "scores.jsonl"
    assert cli.main(["score", "--target", model_server.target, "--model", "funnel",
                     "--examples", str(tmp_path / "missing.tfrecord"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"funnel score: {tmp_path / 'missing.tfrecord'}: no such file\n"
    assert not out.exists()
    (tmp_path / "text.tfrecord").write_text("not a record file\n" * 4)
    assert cli.main(["score", "--target", model_server.target, "--model", "funnel",
                     "--examples", str(tmp_path / "text.tfrecord")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"funnel score: {tmp_path / 'text.tfrecord'}: ") and "function_node" not in err, err
    assert len(err.splitlines()) == 1 and "[Op:" not in err, err


def test_funnel_score_refuses_bad_arguments_and_keeps_a_failed_output_out(tmp_path, model_server, capsys):
    examples = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(examples) as writer:
        for example in EXAMPLES:
            writer.write(example)
    score = ["score", "--target", model_server.target, "--model", "funnel"]
    (tmp_path / "request.json").write_text('{"inputs": [1, 2,]}')
    for extra, message in ((["--request", str(tmp_path / "request.json")],
                            f"{tmp_path / 'request.json'}: not JSON (line 1, column 18): Expecting value"),
                           (["--examples", examples, "--timeout", "0"], "--timeout must be above 0 seconds, got 0.0"),
                           (["--examples", examples, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
                           (["--examples", examples, "--version", "-3"], "--version must not be negative, got -3")):
        assert cli.main(score + extra) == 2
        assert capsys.readouterr().err == f"funnel score: {message}\n"
    (tmp_path / "request.json").write_text("[1, 2]")
    assert cli.main(score + ["--request", str(tmp_path / "request.json")]) == 2
    assert "a JSON object" in capsys.readouterr().err
    # A failure after scoring began (here: a model the server does not serve) leaves an existing
    # --out as it was and no partial file beside it.
    out = tmp_path / "scores.jsonl"
    out.write_text("yesterday's scores\n")
    assert cli.main(["score", "--target", model_server.target, "--model", "nope", "--examples", examples,
                     "--out", str(out)]) == 2
    assert out.read_text() == "yesterday's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples.tfrecord", "request.json", "scores.jsonl"]
    assert cli.main(score + ["--examples", examples, "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == len(EXAMPLES)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would have made it, not a temp file's 0600


def test_version_labels_and_versions_as_against_tf_serving(tmp_path, saved_models, reference, capsys):
    with serve(make_base_path(tmp_path, saved_models, versions=(1, 2)), port=0, poll_seconds=0) as server:
        assert server.wait_until_available(30) == 2 and server.versions == [1, 2]
        v1 = _reference_examples(reference)["score"]
        with FunnelClient(server.target, version_label="canary") as canary, \
                FunnelClient(server.target, version_label="stable") as stable, \
                FunnelClient(server.target, version=1) as first:
            np.testing.assert_allclose(stable.predict_examples(EXAMPLES)["score"], v1, rtol=1e-6)
            np.testing.assert_allclose(first.predict_examples(EXAMPLES)["score"], v1, rtol=1e-6)
            assert not np.allclose(canary.predict_examples(EXAMPLES)["score"], v1)
            assert canary.model_status() == [(2, "AVAILABLE"), (1, "AVAILABLE")]  # the status lists every version
        with pytest.raises(InvalidRequestError, match="Unrecognized servable version label: beta"):
            FunnelClient(server.target, version_label="beta").predict_examples(EXAMPLES)

        request = tmp_path / "request.json"
        request.write_text(json.dumps({"signature_name": "serving_default",
                                       "inputs": {"examples": [{"b64": base64.b64encode(e).decode()}
                                                               for e in EXAMPLES]}}))
        scored = {}
        for flags in (["--version-label", "canary"], ["--version-label", "stable"], ["--version", "2"]):
            assert cli.main(["score", "--target", server.target, "--model", "funnel", "--request", str(request)]
                            + flags) == 0
            scored[" ".join(flags)] = json.loads(capsys.readouterr().out)["outputs"]["score"]
        np.testing.assert_allclose(scored["--version-label stable"], v1, rtol=1e-6)
        assert scored["--version-label canary"] == scored["--version 2"] != scored["--version-label stable"]
    with pytest.raises(SystemExit):
        cli.main(["score", "--target", "x", "--model", "m", "--request", "r", "--version", "1",
                  "--version-label", "canary"])
    with pytest.raises(ValueError, match="not both"):
        FunnelClient("127.0.0.1:1", version=1, version_label="canary")
