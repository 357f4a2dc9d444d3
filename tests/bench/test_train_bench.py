"""bench.train_bench with tiny settings: fields, consistency, and the FLOP counter's behaviour."""

import json
import math

import pytest
import tensorflow as tf

from bench import train_bench as tb
from models import features as F
from models import optimizers
from tests.models.batch import small_config

# Small models (d = 16, click / cart / order max lengths 6 / 3 / 3) of each measured preset.
SMALL = small_config().to_dict()
SMALL_BY_MODEL = {"dmt": SMALL, "dnn-base": small_config("dnn-base").to_dict()}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def result():
    out = tb.run_benchmark(batch_size=16, steps=2, dnn_steps=2, repeats=2, warmup_steps=1, num_batches=2,
                           matmul_sizes=(64, 128), matmul_seconds=0.02, serving_calls=2,
                           serving_seconds_min=0.0, overrides=SMALL_BY_MODEL, log=lambda message: None)
    return json.loads(json.dumps(out))  # what the JSON file holds


def test_the_models_compile_with_the_trainers_optimizer_or_the_one_asked_for():
    vocab = tb.DEFAULT_VOCAB_SIZES
    assert type(tb.build("dnn-base", vocab, SMALL_BY_MODEL["dnn-base"]).optimizer) is optimizers.OPTIMIZERS[
        optimizers.DEFAULT]
    assert type(tb.build("dnn-base", vocab, SMALL_BY_MODEL["dnn-base"], optimizer="lazy_adam").optimizer) \
        is optimizers.LazyAdam


def test_fields_positive_and_consistent(result):
    assert result["batch_size"] == 16 and result["repeats"] == 2
    assert result["optimizer"] == optimizers.DEFAULT  # the Trainer's
    assert "excluded" in result["input_pipeline"]
    for key in ("tf_version", "date"):
        assert result[key]
    assert result["cpu_count"] >= 1
    peak = result["matmul_peak"]
    assert _positive(peak["flops_per_second"]) and peak["best_size"] in (64, 128)
    assert set(peak["median_flops_per_second_by_size"]) == {"64", "128"}
    assert peak["flops_per_second"] == max(peak["median_flops_per_second_by_size"].values())
    assert peak["spread_flops_per_second"][0] <= peak["spread_flops_per_second"][1]
    assert all(_positive(v) for vs in peak["all_flops_per_second_by_size"].values() for v in vs)
    assert _positive(result["serving_examples_per_second"])
    for model_type in ("dmt", "dnn-base"):
        r = result[model_type]
        for key in ("examples_per_second", "examples_per_second_steps_only", "forward_flops_per_example",
                    "training_flops_per_example", "achieved_flops_per_second", "achieved_fraction",
                    "achieved_fraction_matmul_flops_only", "serving_examples_per_second"):
            assert _positive(r[key]), (model_type, key, r[key])
        assert len(r["examples_per_second_all"]) == len(r["serving_examples_per_second_all"]) == 2
        assert r["examples_per_second"] == pytest.approx(
            sorted(r["examples_per_second_all"])[0] / 2 + sorted(r["examples_per_second_all"])[1] / 2)
        # counted on the traced training step, not 3 x forward by construction: its matmuls are
        # the forward ones and, per matmul, the two of its gradient (at most 3 x); the rest also
        # holds the Adam update, which at this tiny batch outweighs a tiny DNN's forward pass
        # (at batch 512 DMT's step measures 2.998 x its forward pass)
        flops = r["flops"]
        assert 2.5 <= flops["matmul_training_flops_per_example"] / flops["matmul_forward_flops_per_example"] <= 3.0
        assert r["training_flops_per_example"] > 2.5 * r["forward_flops_per_example"]
        assert r["training_flops_per_example"] != 3 * r["forward_flops_per_example"]
        assert r["flops"]["training_over_forward"] == pytest.approx(
            r["training_flops_per_example"] / r["forward_flops_per_example"])
        assert r["achieved_fraction"] == pytest.approx(
            r["examples_per_second"] * r["training_flops_per_example"] / peak["flops_per_second"], rel=1e-9)
        assert r["achieved_fraction_matmul_flops_only"] <= r["achieved_fraction"]
        low, high = r["achieved_fraction_spread"]
        assert low == min(r["achieved_fraction_per_repeat"]) and high == max(r["achieved_fraction_per_repeat"])
        flops = r["flops"]
        assert "profiler" in flops["method"] and flops["method"] == r["flops_method"]
        # the counted matmuls / einsums are exactly the analytical count, and the by-op-type walk
        # reproduces tfprof's total
        assert flops["matmul_forward_flops_per_example"] == pytest.approx(
            flops["analytical_matmul_forward_flops_per_example"], rel=1e-9)
        assert flops["by_op_type_sum_minus_profiler_per_example"] == 0
        assert flops["einsum_ops_not_counted"] == 0
    # tfprof over-counts the attention gradients' adjoint BatchMatMuls (the decoder's query is
    # one row, its keys L): removed, so DMT's step is at most 3 x its matmuls; the DNN has none
    assert result["dmt"]["flops"]["training_batch_matmul_over_count_removed_per_example"] > 0
    assert result["dnn-base"]["flops"]["training_batch_matmul_over_count_removed_per_example"] == 0
    assert result["dmt"]["forward_flops_per_example"] > result["dnn-base"]["forward_flops_per_example"]


def test_flops_grow_with_click_sequence_length():
    def forward(click_length: int):
        overrides = {**SMALL, "sequences": {**SMALL["sequences"], F.SEQUENCE_CLICK: click_length}}
        model = tb.build("dmt", tb.DEFAULT_VOCAB_SIZES, overrides)
        batch, _ = tb.make_batch(model.model_config, tb.DEFAULT_VOCAB_SIZES, 4, full_length=True)
        return (tb.count_flops(model, batch),
                tb.analytical_forward_flops(model.model_config, model.network.mixture.num_scenarios))

    (short, short_analytical), (long, long_analytical) = forward(6), forward(12)
    assert long["forward_flops_per_example"] > short["forward_flops_per_example"]
    assert long["profiler_only_forward_flops_per_example"] > short["profiler_only_forward_flops_per_example"]
    # the growth of the counted matmuls is the analytical one (quadratic in L for self-attention)
    assert (long["matmul_forward_flops_per_example"] - short["matmul_forward_flops_per_example"]
            == pytest.approx(long_analytical - short_analytical, rel=1e-9))


@pytest.mark.parametrize("levels,task_experts,shared_experts", [(2, 1, 1), (3, 2, 1), (1, 0, 2)])
def test_ple_matmuls_are_its_analytical_count(levels, task_experts, shared_experts):
    """PLE's cross-check: every level's experts and gates (the shared gate below the last level)
    and the towers, counted from the graph, are the formula's."""
    mixture = {"type": "ple", "levels": levels, "task_experts": task_experts, "shared_experts": shared_experts,
               "expert_units": [24, 12], "gate_units": [8], "tower_units": [6]}
    model = tb.build("ple", tb.DEFAULT_VOCAB_SIZES, {**small_config("ple").to_dict(), "mixture": mixture})
    batch, _ = tb.make_batch(model.model_config, tb.DEFAULT_VOCAB_SIZES, 4, full_length=True)
    counted = tb.count_flops(model, batch)
    assert counted["analytical_matmul_forward_flops_per_example"] is not None
    assert counted["matmul_forward_flops_per_example"] == pytest.approx(
        counted["analytical_matmul_forward_flops_per_example"], rel=1e-9)


@pytest.mark.parametrize("mixture", [
    {"type": "immoe", "num_experts": 3, "expert_units": [24, 12], "gate_units": [8], "tower_units": [6, 4]},
    {"type": "hmoe", "num_experts": 2, "expert_units": [16], "gate_units": [], "scenario_gate_units": [8],
     "tower_units": [6]},
    {"type": "mmoe", "num_experts": 3, "expert_units": [16], "gate_units": [5], "tower_units": [6]}])
def test_scenario_mixtures_matmuls_are_their_analytical_count(mixture):
    """IMMoE / HMoE's cross-check: experts, per-task gates, a tower per task and known scenario
    (and HMoE's scenario gates), counted from the graph, are the formula's; MMoE for contrast."""
    vocab_sizes = {**tb.DEFAULT_VOCAB_SIZES, F.SCENARIO: 4}  # 3 known scenarios, 1 OOV bucket
    model = tb.build(mixture["type"], vocab_sizes, {**small_config().to_dict(), "mixture": mixture})
    assert model.network.mixture.num_scenarios == 3
    batch, _ = tb.make_batch(model.model_config, vocab_sizes, 4, full_length=True)
    counted = tb.count_flops(model, batch)
    assert counted["matmul_forward_flops_per_example"] == pytest.approx(
        counted["analytical_matmul_forward_flops_per_example"], rel=1e-9)


def test_training_flops_are_counted_from_the_graph_for_any_architecture():
    """DIN has no analytical formula: its training step is still counted, with its gradients."""
    model = tb.build("din", tb.DEFAULT_VOCAB_SIZES, small_config("din").to_dict())
    features, labels = tb.make_batch(model.model_config, tb.DEFAULT_VOCAB_SIZES, 32)
    counted = tb.count_flops(model, features, labels)
    assert counted["analytical_matmul_forward_flops_per_example"] is None
    assert 2.0 < counted["training_over_forward"] < 4.0
    assert counted["matmul_training_flops_per_example"] > 2 * counted["matmul_forward_flops_per_example"]
    assert counted["training_einsum_ops_not_counted"] == 0
    assert "train_step" in counted["training_convention"]


def test_the_fusion_network_preset_is_counted_on_request_grouped_batches():
    """`dmt-fusion`'s train step reads `request_key` (its per-request list loss): the synthetic
    batch groups REQUEST_SIZE consecutive rows, as the Trainer's request-grouped blocks do."""
    model = tb.build("dmt-fusion", tb.DEFAULT_VOCAB_SIZES, small_config("dmt-fusion").to_dict())
    features, labels = tb.make_batch(model.model_config, tb.DEFAULT_VOCAB_SIZES, 2 * tb.REQUEST_SIZE + 1)
    keys = features[F.REQUEST_KEY].numpy()[:, 0].tolist()
    assert keys == [0] * tb.REQUEST_SIZE + [1] * tb.REQUEST_SIZE + [2]
    counted = tb.count_flops(model, features, labels)
    assert counted["matmul_training_flops_per_example"] > 2 * counted["matmul_forward_flops_per_example"]


def test_batch_matmul_flops_follow_the_adjoint_that_tfprof_ignores():
    from bench import flops

    graph = tf.Graph()
    with graph.as_default():
        # dW = X^T dY of a one-row query: [3, 1, 6]^T x [3, 1, 8] -> [3, 6, 8], contracted size 1
        tf.linalg.matmul(tf.zeros([3, 1, 6]), tf.zeros([3, 1, 8]), adjoint_a=True)
        tf.linalg.matmul(tf.zeros([3, 2, 6]), tf.zeros([3, 6, 8]))  # no adjoint: tfprof is right
    counted = flops.graph_flops(graph)
    exact = 2 * 3 * 6 * 1 * 8 + 2 * 3 * 2 * 6 * 8
    assert counted["by_op_type"]["BatchMatMulV2"] == exact
    assert counted["profiler"] - counted["batch_matmul_over_count"] == exact
    assert counted["batch_matmul_over_count"] == 2 * 6 * (3 * 6 * 8) - 2 * 3 * 6 * 1 * 8  # tfprof's k = 6
    assert counted["walk_minus_profiler"] == 0


def test_einsum_flops_are_added_to_the_profiler_count():
    """DIN pools its sequence with an Einsum, which tfprof counts as 0 FLOPs."""
    model = tb.build("din", tb.DEFAULT_VOCAB_SIZES, small_config("din").to_dict())
    batch, _ = tb.make_batch(model.model_config, tb.DEFAULT_VOCAB_SIZES, 4)
    counted = tb.count_flops(model, batch)
    assert counted["einsum_forward_flops_per_example"] > 0
    assert counted["forward_flops_per_example"] == pytest.approx(
        counted["profiler_only_forward_flops_per_example"] + counted["einsum_forward_flops_per_example"])
