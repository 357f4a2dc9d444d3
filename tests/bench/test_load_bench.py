"""bench/load_bench.py: its request mix, its accounting, and a small load against the
development server with malformed requests and a version pushed mid-load."""

import grpc
import numpy as np
import pytest
import tensorflow as tf

from bench import load_bench
from serving import warmup
from serving.server import serve
from tests.serving.conftest import RANK_INPUTS, make_base_path, save_model

MAX_CANDIDATES = 1000
MAX_MESSAGE_BYTES = 64 << 10
VALID = warmup.predict_request("rank", RANK_INPUTS)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """One small SavedModel with a `rank` signature; its versions are copies of it."""
    return save_model(str(tmp_path_factory.mktemp("load_model") / "model"), 0.5)


def test_schedule_mixes_exactly_the_malformed_fraction_in_equal_shares():
    plan = load_bench.schedule(600, 0.05, ["a", "b", "c"], seed=3)
    assert len(plan) == 600 and plan.count(None) == 570
    assert plan.count("a") == plan.count("b") == plan.count("c") == 10
    assert plan == load_bench.schedule(600, 0.05, ["a", "b", "c"], seed=3)
    assert plan != load_bench.schedule(600, 0.05, ["a", "b", "c"], seed=4)
    with pytest.raises(ValueError):
        load_bench.schedule(10, 1.5, ["a"])


def test_malformed_kinds_derive_from_a_valid_rank_request():
    kinds = load_bench.malformed_requests(VALID, MAX_CANDIDATES, MAX_MESSAGE_BYTES)
    assert sorted(kinds) == ["mismatched candidate count", "missing input", "over the candidate cap",
                             "over the message size cap", "unknown signature", "wrong dtype"]
    assert kinds["wrong dtype"][0].inputs["age"].dtype == tf.float32.as_datatype_enum
    assert sorted(kinds["missing input"][0].inputs) == ["item_id", "price"]
    assert tf.make_ndarray(kinds["mismatched candidate count"][0].inputs["age"]).shape == (2, 2)
    cap = kinds["over the candidate cap"][0].inputs["item_id"]
    assert [d.size for d in cap.tensor_shape.dim] == [2, MAX_CANDIDATES // 2 + 1] and len(cap.string_val) == 1
    assert kinds["over the message size cap"][0].ByteSize() > MAX_MESSAGE_BYTES
    assert kinds["over the message size cap"][1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert {code for kind, (_, code) in kinds.items() if kind != "over the message size cap"} == {
        grpc.StatusCode.INVALID_ARGUMENT}
    assert VALID.model_spec.signature_name == "rank" and len(VALID.inputs) == 3  # the original is untouched
    # No cap configured: no kind for it.
    assert sorted(load_bench.malformed_requests(VALID, 0, 0)) == [
        "mismatched candidate count", "missing input", "unknown signature", "wrong dtype"]


def test_summary_counts_failed_valid_requests_and_unexpected_answers():
    ok, invalid = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
    outcomes = [load_bench.Outcome("latest", ok, 2, 0.01, ""), load_bench.Outcome("stable", ok, 1, 0.02, ""),
                load_bench.Outcome("latest", ok, 3, 0.01, ""),
                load_bench.Outcome("canary", grpc.StatusCode.UNAVAILABLE, None, 0.5, "gone"),
                load_bench.Outcome("wrong dtype", invalid, None, 0.001, "Expects arg"),
                load_bench.Outcome("unknown signature", grpc.StatusCode.INTERNAL, None, 0.001, "boom")]
    report = load_bench.summarize(outcomes, {"wrong dtype": invalid, "unknown signature": invalid}, 2.0, 4, None)
    assert report["requests_per_second"] == 3.0
    assert (report["valid"]["sent"], report["valid"]["failed"]) == (4, 1)
    assert report["valid"]["failures"] == ["canary: UNAVAILABLE: gone"]
    assert report["malformed"]["answered_as_expected"] == 1
    assert report["malformed"]["unexpected"] == ["unknown signature: INTERNAL: boom"]
    assert report["versions"]["newest_versions_seen"] == [2, 3] and report["versions"]["swaps"] == 1


def test_load_with_malformed_requests_and_a_version_pushed_mid_load(tmp_path, model):
    base = make_base_path(tmp_path, {1: model, 2: model}, versions=(1, 2))
    with serve(base, port=0, poll_seconds=0.1, max_message_bytes=MAX_MESSAGE_BYTES,
               max_candidates=MAX_CANDIDATES) as server:
        server.wait_until_available(60)
        assert server.versions == [1, 2]

        def push():  # version 3 while requests run
            load_bench.push_version(model, base, 3)
            load_bench.wait_for_versions(server.target, [2, 3], 60)

        report = load_bench.run_load(server.target, [VALID], 600, 8, 0.05, MAX_CANDIDATES, MAX_MESSAGE_BYTES,
                                     push=push, seed=1)
        assert server.versions == [2, 3]
    assert report["requests"] == 600 and report["valid"]["sent"] == 570
    assert report["valid"]["failed"] == 0, report["valid"]["failures"]
    malformed = report["malformed"]
    assert malformed["sent"] == 30 and malformed["unexpected"] == [], malformed["unexpected"]
    assert malformed["answered_invalid_argument"] == malformed["invalid_argument_kinds_sent"] == 25
    for kind, counts in malformed["by_kind"].items():
        assert counts["answered"] == {counts["expected"]: counts["sent"]} and counts["sent"] == 5, kind
    # Before the push: newest / canary = 2, stable = 1; the last quarter runs after it: 3 and 2.
    served = report["versions"]["served_by_choice"]
    assert (set(served["latest"]), set(served["canary"]), set(served["stable"])) == (
        {"2", "3"}, {"2", "3"}, {"1", "2"})
    assert report["versions"]["swaps"] == 1 and "error" not in report["push"]
    assert report["valid"]["latency"]["p99_ms"] > 0 and np.isfinite(report["requests_per_second"])
