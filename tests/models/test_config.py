import pytest

from models import features as F
from models.config import ModelConfig


def test_defaults_are_the_papers():
    c = ModelConfig.from_dict({})
    e, m = c.sequence_encoder, c.mixture
    assert e["type"] == "transformer" and m["type"] == "immoe" and c.heads == {"type": "independent"}
    assert c.d_model == 80 and c.ffn_units == 320 and e["num_heads"] == 4
    assert (e["encoder_blocks"], e["decoder_blocks"], e["dropout"]) == (1, 1, 0.1)
    assert e["positional"] == "none" and e["recency"]  # measured: positional-recency-seeds
    assert c.sequences == {"click": 50, "cart": 10, "order": 10}
    # IMMoE (HMoE 3.2) at the HMoE paper's sizes (4.1), measured ahead of DMT's MMoE (eq. 3)
    assert (m["num_experts"], m["expert_units"], m["gate_units"], m["tower_units"]) == (5, [128], [64], [64, 32])
    assert c.tasks == ["click", "order"]
    assert c.loss_weights == {"click": 1.0, "order": 1.0}
    assert c.fusion == {"type": "product", "weights": None}  # p_click * p_order, chosen by measurement
    assert c.bias_features == "all" and c.bias_output_dropout == 0.8 and c.bias_units == [64, 32]
    assert c.use_dense_features and c.bucket_embedding_dim == 8
    assert c.use_scenario and c.uses_scenario  # measured: scenario-seeds
    paper = ModelConfig.from_dict({"preset": "dmt-paper"})
    assert not paper.use_scenario and paper.sequence_encoder["positional"] == "learned"  # Table 3


def test_from_dict_overrides_and_shorthands():
    c = ModelConfig.from_dict({
        "tasks": ["click", "cart", "order"], "loss_weights": [1.0, 0.5, 2.0],
        "fusion": {"weights": {"order": 3.0}}, "sequences": ["click", "cart"],
        "embedding_dims": {"item_id": 16}, "sequence_encoder": {"num_heads": 2, "positional": "sincos"}})
    assert c.loss_weights == {"click": 1.0, "cart": 0.5, "order": 2.0}
    assert c.fusion == {"type": "product", "weights": {"order": 3.0}}
    assert c.sequences == {"click": 50, "cart": 10}
    assert c.d_model == 64 and c.ffn_units == 256
    assert ModelConfig.from_dict(c.to_dict()) == c


def test_transform_config_supplies_buckets_unless_set():
    transform = {"bucketized_features": ["item_price"], "num_buckets": 7}
    c = ModelConfig.from_dict({}, transform_config={**transform, "num_oov_buckets": 3})
    assert c.bucketized_features == ["item_price"] and c.num_buckets == 7 and c.num_oov_buckets == 3
    c = ModelConfig.from_dict({"bucketized_features": []}, transform_config=transform)
    assert c.bucketized_features == [] and not c.uses_buckets


@pytest.mark.parametrize("section", [
    {"no_such_key": 1},
    {"sequence_encoder": {"positional": "rotary"}},
    {"bias_features": "position"},
    {"bias_neighbors": "brands"},
    {"tasks": ["click", "like"]},
    {"sequences": {"view": 5}},
    {"sequence_encoder": {"num_heads": 3}},
    {"loss_weights": {"cart": 1.0}},
    {"loss_weights": [1.0]},
    {"model_type": "din"},
    {"num_heads": 4},  # a transformer argument belongs in sequence_encoder
])
def test_invalid_sections_are_rejected(section):
    with pytest.raises(ValueError):
        ModelConfig.from_dict(section)


def test_all_labels_are_valid_tasks():
    c = ModelConfig.from_dict({"tasks": list(F.LABELS)})
    assert c.served_outputs == list(F.LABELS)
