"""The parts' registry (models/registry.py): a section's arguments are checked against the types
of the part's defaults when the config is read, not when the Trainer builds the network."""

import pytest

from models.config import ModelConfig


@pytest.mark.parametrize("section, message", [
    ({"mixture": {"num_experts": "4"}}, "mixture 'immoe': num_experts must be an integer >= 1, got '4'"),
    ({"mixture": {"num_experts": 0}}, "mixture 'immoe': num_experts must be an integer >= 1, got 0"),
    ({"mixture": {"expert_units": 128}}, "mixture 'immoe': expert_units must be a list, got 128"),
    ({"mixture": {"tower_units": [64, 0]}}, "mixture 'immoe': tower_units must be a list of integers >= 1, got [64, 0]"),
    ({"mixture": {"dropout": "0.1"}}, "mixture 'immoe': dropout must be a number or a list of them, got '0.1'"),
    ({"sequence_encoder": {"recency": "yes"}}, "sequence_encoder 'transformer': recency must be true or false, got 'yes'"),
    ({"sequence_encoder": {"pooling": 1}}, "sequence_encoder 'transformer': pooling must be a string, got 1"),
    # arguments that default to None, judged by their annotations
    ({"sequence_encoder": {"ffn_dim": "320"}}, "sequence_encoder 'transformer': ffn_dim must be an integer >= 1, got '320'"),
    ({"sequence_encoder": {"ffn_dim": 0}}, "sequence_encoder 'transformer': ffn_dim must be an integer >= 1, got 0"),
    ({"fusion": {"type": "weighted", "weights": {"click": "a"}}},
     "fusion 'weighted': weights must be a mapping of names to numbers, got {'click': 'a'}"),
    ({"fusion": {"type": "product", "weights": [1, 1]}}, "fusion 'product': weights must be a mapping, got [1, 1]"),
    ({"mixture": {"type": "mmoe", "expert": "gdcn"}}, "mixture 'mmoe': expert must be a mapping, got 'gdcn'"),
    # sections inside sections: DTN's interactions, MMoE's expert
    ({"mixture": {"type": "dtn", "interactions": [{"type": "gdcn", "layers": "2"}]}},
     "mixture 'dtn': interactions: expert 'gdcn': layers must be an integer >= 1, got '2'"),
    ({"mixture": {"type": "dtn", "interactions": [{"type": "memonet", "id_fields": "item_id"}]}},
     "mixture 'dtn': interactions: expert 'memonet': id_fields must be a list of names, got 'item_id'"),
    ({"mixture": {"type": "dtn", "interactions": ["gdcn"]}},
     "mixture 'dtn': interactions: each must be a section {type: NAME, ...}, NAME one of gdcn, masknet, memonet, "
     "mlp; got 'gdcn'"),
    ({"mixture": {"type": "mmoe", "expert": {"type": "gdcn", "projection_dim": "a"}}},
     "mixture 'mmoe': expert: expert 'gdcn': projection_dim must be an integer >= 1, got 'a'"),
    ({"mixture": {"type": "mmoe", "expert": {"type": "mlp2"}}},
     "mixture 'mmoe': expert: unknown expert type 'mlp2'; known: gdcn, masknet, memonet, mlp"),
])
def test_an_argument_of_the_wrong_type_or_range_is_named(section, message):
    with pytest.raises(ValueError) as error:
        ModelConfig.from_dict({"preset": "dmt", **section})
    assert str(error.value) == message


def test_zero_where_a_part_means_none_and_empty_or_per_layer_lists_pass():
    ModelConfig.from_dict({"preset": "dmt", "sequence_encoder": {"encoder_blocks": 0}})  # the baselines suite's
    ModelConfig.from_dict({"preset": "dmt", "mixture": {"type": "ple", "shared_experts": 0, "gate_units": []}})
    ModelConfig.from_dict({"preset": "dmt", "mixture": {"type": "mmoe", "dropout": [0.5, 0.3], "tower_units": (32,)}})
    ModelConfig.from_dict({"preset": "dtn", "mixture": {"trimmed": ["click_masknet_0"]}})
    ModelConfig.from_dict({"preset": "dmt", "sequence_encoder": {"ffn_dim": 128},
                           "fusion": {"type": "weighted", "weights": {"click": 1, "order": 0.5}}})
    ModelConfig.from_dict({"preset": "dmt", "sequence_encoder": {"ffn_dim": None}})  # YAML's `ffn_dim:`: 4 * d
