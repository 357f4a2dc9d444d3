"""FLOPs of a funnel model, counted on its traced graphs: the TF profiler (tfprof
`float_operation`) plus the `Einsum` ops the profiler has no statistics for (e.g. DIN's
pooling), with the BatchMatMuls whose statistic tfprof gets wrong (adjoint inputs, in the
attention's gradients) counted from their shapes, at a fixed batch
size. Training FLOPs are counted on the graph of the Keras training step itself (`train_step`:
forward with dropout, losses, gradients, Adam update), so a new architecture needs no formula;
the forward pass (`model.call(features, training=False)`) is counted too, and cross-checked
against an analytical count of the matmuls (DMT) and against the 3 x forward convention."""

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

from models import features as F
from models.config import BIAS_PARTS, ModelConfig
from models.registry import MIXTURES

MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")
TRAINING_FLOPS_MULTIPLIER = 3


def _static_function(model, features: Mapping[str, Any], body, extra_spec=None) -> tf.Graph:
    """Graph of one `tf.function` (autograph off, so no nested function calls and every op is
    in this graph) of body(inputs[, extra]) at the batch's fixed size: dense features as inputs
    of fixed shape, SparseTensors as their indices / values inputs with a constant dense_shape,
    so the sequences' padded [B, L] tensors, and everything after them, have static shapes."""
    dense = {k: v for k, v in features.items() if not isinstance(v, tf.SparseTensor)}
    sparse = {k: v for k, v in features.items() if isinstance(v, tf.SparseTensor)}
    shapes = {k: [int(d) for d in v.dense_shape.numpy()] for k, v in sparse.items()}

    def function(dense_inputs, sparse_inputs, *extra):
        inputs = dict(dense_inputs)
        for k, (indices, values) in sparse_inputs.items():
            inputs[k] = tf.SparseTensor(indices, values, tf.constant(shapes[k], tf.int64))
        return body(inputs, *extra)

    dense_spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in dense.items()}
    sparse_spec = {k: (tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([None], v.values.dtype))
                   for k, v in sparse.items()}
    specs = (dense_spec, sparse_spec) + ((extra_spec,) if extra_spec is not None else ())
    return tf.function(function, autograph=False).get_concrete_function(*specs).graph


def training_step_graph(model, features: Mapping[str, Any], labels: Mapping[str, tf.Tensor]) -> tf.Graph:
    """Graph of the compiled model's `train_step((features, labels))`: what `fit` runs per batch."""
    model(features, training=False)  # builds the variables outside the function
    model.optimizer.build(model.trainable_variables)  # the Adam slots, likewise
    label_spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in labels.items()}
    return _static_function(model, features, lambda inputs, y: model.train_step((inputs, y)), label_spec)


def forward_graph(model, features: Mapping[str, Any]) -> tf.Graph:
    """Graph of the forward pass `model.call(features, training=False)` at the batch's fixed size.

    One `tf.function` (no nested function call, so every op is in this one graph) over the
    features: dense ones as inputs of fixed shape, SparseTensors as their indices / values
    inputs with a constant dense_shape, so the sequences' padded [B, L] tensors, and
    everything after them, have fully defined static shapes.
    """
    model(features, training=False)  # builds the variables outside the function
    return _static_function(model, features, lambda inputs: model.call(inputs, training=False))


def _einsum_flops(op: tf.Operation) -> Optional[int]:
    """FLOPs of a two-operand Einsum: 2 x (product of all index sizes) when an index is summed
    over (a multiply and an add per term), the product otherwise; None if shapes are unknown."""
    equation = op.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    lhs, out = equation.replace(" ", "").split("->")
    operands = lhs.split(",")
    if "." in equation or len(operands) != len(op.inputs) or len(operands) > 2:
        return None
    sizes: Dict[str, int] = {}
    for labels, tensor in zip(operands, op.inputs):
        shape = tensor.shape
        if not shape.is_fully_defined() or len(labels) != shape.rank:
            return None
        sizes.update(zip(labels, shape.as_list()))
    product = int(np.prod([sizes[c] for c in sizes], dtype=np.int64))
    contracted = set(sizes) - set(out)
    return 2 * product if contracted else product


_BATCH_MATMUL_OPS = tuple(t for t in MATMUL_OPS if t.startswith("BatchMatMul"))


def _batch_matmul_flops(op: tf.Operation) -> Optional[int]:
    """FLOPs of a BatchMatMul: 2 x batch x m x k x n, k the contracted size. TF's registered
    statistic (which tfprof uses) takes k as the last dimension of x even when `adj_x` transposes
    it, which over-counts a gradient such as dW = X^T dY of a decoder query ([B, h, 1, L]^T
    x [B, h, 1, d_k] counts L times the products it makes); None if shapes are unknown."""
    x, y = op.inputs[0].shape, op.inputs[1].shape
    out = op.outputs[0].shape
    if not (x.is_fully_defined() and y.is_fully_defined() and out.is_fully_defined()):
        return None
    k = x[-2] if op.get_attr("adj_x") else x[-1]
    return int(2 * k * np.prod(out.as_list(), dtype=np.int64))


# Compute ops that may lack FLOP statistics (reported, not counted: all are elementwise).
_COMPUTE_OP_TYPES = ("BiasAdd", "Relu", "Sigmoid", "Exp", "Tanh", "Sqrt", "Rsqrt", "SelectV2", "Select",
                     "Mean", "Max", "Sum", "Softmax", "FusedBatchNormV3", "Erf")


def _has_flops_statistics(op_type: str) -> bool:
    try:
        tf_ops._stats_registry.lookup(op_type + ",flops")  # pylint: disable=protected-access
        return True
    except LookupError:
        return False


def graph_flops(graph: tf.Graph) -> Dict[str, Any]:
    """FLOPs of a graph: tfprof's `float_operation` total, plus the Einsum ops (which have no
    FLOP statistics, so tfprof counts them as 0) from their equations and static shapes, minus
    what tfprof over-counts for BatchMatMuls with `adj_x` (`_batch_matmul_flops`).

    The by-op-type breakdown walks the graph with the FLOP statistics registry tfprof itself
    uses; its sum is checked against tfprof's total.
    """
    options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    total = int(model_analyzer.profile(graph, cmd="scope", options=options).total_float_ops)
    by_type: Dict[str, int] = {}
    einsum_missed, missing_shape, unregistered, over_counted = 0, {}, {}, 0
    for op in graph.get_operations():
        if op.type == "Einsum":
            flops = _einsum_flops(op)
            if flops is None:
                einsum_missed += 1
            else:
                by_type["Einsum"] = by_type.get("Einsum", 0) + flops
            continue
        if op.type in _COMPUTE_OP_TYPES and not _has_flops_statistics(op.type):
            unregistered[op.type] = unregistered.get(op.type, 0) + 1
            continue
        try:
            stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except ValueError:  # incomplete shape: tfprof skips these ops too
            missing_shape[op.type] = missing_shape.get(op.type, 0) + 1
            continue
        value = int(stats.value or 0)
        if op.type in _BATCH_MATMUL_OPS and value:
            exact = _batch_matmul_flops(op)
            if exact is not None:
                over_counted += value - exact
                value = exact
        if value:
            by_type[op.type] = by_type.get(op.type, 0) + value
    einsum = by_type.get("Einsum", 0)
    return {"profiler": total, "einsum": einsum, "by_op_type": by_type,
            "batch_matmul_over_count": over_counted,
            "walk_minus_profiler": sum(by_type.values()) - einsum - (total - over_counted),
            "einsum_ops_not_counted": einsum_missed, "ops_with_incomplete_shapes": missing_shape,
            "op_types_without_flop_statistics": unregistered}


def analytical_forward_flops(config: ModelConfig, num_scenarios: int = 1) -> Optional[int]:
    """2 x multiply-adds of every matmul / einsum of one example's forward pass (no elementwise),
    for the transformer (or no) sequence encoders and the MMoE, PLE, IMMoE, HMoE or shared-bottom
    mixtures with independent heads; None for other compositions (no cross-check).
    `num_scenarios`: the known scenarios (IMMoE / HMoE have a tower per task and scenario).

    Deep Interest Transformer (per sequence, L its max length, d width, f FFN width):
      encoder block: Q, K, V, O projections 8 L d^2, QK^T and AV 4 L^2 d, FFN 4 L d f;
      decoder block (one query): Q, O 4 d^2, K, V 4 L d^2, QK^T and AV 4 L d, FFN 4 d f.
    MMoE: experts, gates (per task) and towers (per task); PLE (Tang et al. 2020, eq. 2-5): per
    level, every task's and the shared experts, each task's gate and, below the last level, the
    shared gate (level 1 reads x, later levels the experts' width), then the towers; IMMoE /
    HMoE (Li et al. 2020, eq. 4-5, 7): MMoE's experts and per-task gates, a tower per task and
    scenario (every example runs all T, then reads its own or mixes them) and, for HMoE, a
    scenario gate per task; shared bottom: bottom and towers; bias tower.
    """
    def mlp(sizes: Sequence[int]) -> int:
        return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))

    mixture, encoder = config.mixture, config.sequence_encoder
    if (mixture["type"] not in ("mmoe", "ple", "immoe", "hmoe", "shared_bottom")
            or config.heads["type"] != "independent"
            or (config.sequences and encoder["type"] != "transformer")):
        return None
    d, f = config.d_model, config.ffn_units
    context = 0
    if config.use_dense_features:
        context += len(F.DENSE_FEATURES)
    if config.uses_buckets:
        context += len(config.bucketized_features) * config.bucket_embedding_dim
    if config.use_scenario:
        context += config.scenario_embedding_dim
    total = 0
    for length in config.sequences.values():
        encoder_flops = 8 * length * d * d + 4 * length * length * d + 4 * length * d * f
        decoder_flops = 4 * d * d + 4 * length * d * d + 4 * length * d + 4 * d * f
        total += int(encoder["encoder_blocks"]) * encoder_flops + int(encoder["decoder_blocks"]) * decoder_flops
    use_target = config.use_target_embedding or not config.sequences
    x = len(config.sequences) * d + (d if use_target else 0) + context
    towers = len(config.tasks)
    units = list(mixture["bottom_units" if mixture["type"] == "shared_bottom" else "expert_units"])
    if mixture["type"] in ("mmoe", "immoe", "hmoe"):
        total += mixture["num_experts"] * mlp([x] + units)
        total += towers * mlp([x] + list(mixture["gate_units"]) + [mixture["num_experts"]])
        if mixture["type"] == "hmoe":
            total += towers * mlp([x] + list(mixture["scenario_gate_units"]) + [num_scenarios])
    elif mixture["type"] == "ple":
        gate_units = list(mixture["gate_units"])
        per_task, shared, levels = mixture["task_experts"], mixture["shared_experts"], mixture["levels"]
        for level in range(levels):
            width = x if level == 0 else units[-1]
            total += (towers * per_task + shared) * mlp([width] + units)
            total += towers * mlp([width] + gate_units + [per_task + shared])
            if level < levels - 1:
                total += mlp([width] + gate_units + [towers * per_task + shared])
    else:
        total += mlp([x] + units)
    # every mixture's towers read its last hidden width (the experts' or the shared bottom's);
    # the scenario-aware ones (IMMoE, HMoE) have a tower per task and known scenario
    towers_per_task = num_scenarios if MIXTURES.get(mixture["type"]).uses_scenario else 1
    total += towers * towers_per_task * mlp([units[-1]] + list(mixture["tower_units"]) + [1])
    if config.bias_features != "none":  # the neighbours' part embeds the item's and K neighbours' categories
        width = sum((F.NUM_NEIGHBORS + 1 if part == "neighbors" else 1) * config.bias_embedding_dim
                    for part in BIAS_PARTS[config.bias_features])
        total += mlp([width] + list(config.bias_units) + [1])
    return total


def count_flops(model, features: Mapping[str, Any], labels: Optional[Mapping[str, tf.Tensor]] = None
                ) -> Dict[str, Any]:
    """Forward and training FLOPs per example of `model` (see the module docstring). Training
    FLOPs are counted on the traced training step when `labels` are given (the model must be
    compiled), else taken as 3 x forward."""
    batch_size = int(features[F.ITEM_ID].shape[0])
    counted = graph_flops(forward_graph(model, features))
    matmul = sum(v for k, v in counted["by_op_type"].items() if k in MATMUL_OPS)
    forward = (counted["profiler"] - counted["batch_matmul_over_count"] + counted["einsum"]) / batch_size
    analytical = analytical_forward_flops(model.model_config, model.network.mixture.num_scenarios)
    result = {
        "forward_flops_per_example": forward,
        "training_flops_per_example": TRAINING_FLOPS_MULTIPLIER * forward,
        "method": ("tf_profiler+einsum: tfprof float_operation() total on the graph of a "
                   "tf.function calling model.call(features, training=False) (batch %d, SparseTensor "
                   "inputs with a constant dense_shape so that every shape is static) "
                   "plus the Einsum ops tfprof has no FLOP statistics for, counted from their "
                   "equations and static shapes, and with BatchMatMuls (the attention products) "
                   "counted from their shapes where tfprof's statistic ignores adj_x" % batch_size),
        "training_convention": "training = %d x forward (backward ~ 2 x forward); optimizer "
                               "update, embedding gathers and input pipeline not counted"
                               % TRAINING_FLOPS_MULTIPLIER,
        "profiler_only_forward_flops_per_example": counted["profiler"] / batch_size,
        "einsum_forward_flops_per_example": counted["einsum"] / batch_size,
        "batch_matmul_over_count_removed_per_example": counted["batch_matmul_over_count"] / batch_size,
        "matmul_forward_flops_per_example": matmul / batch_size,
        "analytical_matmul_forward_flops_per_example": analytical,
        "matmul_vs_analytical_relative_difference": (
            None if analytical is None else (matmul / batch_size - analytical) / analytical),
        "by_op_type_per_example": {k: v / batch_size for k, v in
                                   sorted(counted["by_op_type"].items(), key=lambda kv: -kv[1])},
        "by_op_type_sum_minus_profiler_per_example": counted["walk_minus_profiler"] / batch_size,
        "einsum_ops_not_counted": counted["einsum_ops_not_counted"],
        "ops_with_incomplete_shapes": counted["ops_with_incomplete_shapes"],
        "op_types_without_flop_statistics": counted["op_types_without_flop_statistics"],
        "profile_batch_size": batch_size,
    }
    if labels is not None:
        step = graph_flops(training_step_graph(model, features, labels))
        training = (step["profiler"] - step["batch_matmul_over_count"] + step["einsum"]) / batch_size
        step_matmul = sum(v for k, v in step["by_op_type"].items() if k in MATMUL_OPS) / batch_size
        result.update({
            "training_flops_per_example": training,
            "training_convention": ("counted on the traced training step (model.train_step: forward with "
                                    "dropout, losses, gradients, Adam update) by the same method; the "
                                    "embedding gathers and their sparse gradient updates are not FLOPs"),
            "training_over_forward": training / forward,
            "matmul_training_flops_per_example": step_matmul,
            "training_by_op_type_per_example": {k: v / batch_size for k, v in
                                                sorted(step["by_op_type"].items(), key=lambda kv: -kv[1])[:15]},
            "training_einsum_ops_not_counted": step["einsum_ops_not_counted"],
            "training_batch_matmul_over_count_removed_per_example": step["batch_matmul_over_count"] / batch_size,
            "training_ops_with_incomplete_shapes": step["ops_with_incomplete_shapes"],
        })
    return result
