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
