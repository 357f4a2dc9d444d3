"""Tests of the decoder attention summaries (models/attention_summary.py)."""

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from models import attention_summary
from models.model import build_model
from tests.models.batch import SEQUENCE_LENGTHS, VOCAB_SIZES, make_batch, row_lengths, small_config


def test_dmt_decoder_weights_cover_each_sequence_and_skip_padding(tmp_path):
    model = build_model(small_config(tasks=["click", "order"]), VOCAB_SIZES)
    features, _ = make_batch(batch_size=6)
    model(features)
    attention = attention_summary.sample_attention(model, features, samples=4)
    assert set(attention) == set(SEQUENCE_LENGTHS)
    for sequence, length in SEQUENCE_LENGTHS.items():
        weights, mask = np.asarray(attention[sequence]["weights"]), np.asarray(attention[sequence]["mask"])
        assert weights.shape == mask.shape == (4, length)
        # the rows' elements as make_batch draws them (capped at the sequence's length)
        np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(row_lengths(6, length)[:4], length))
        assert np.all(weights[mask == 0] == 0)
        for row in range(4):
            if mask[row].any():  # softmax over the row's elements: they share all the weight
                assert weights[row].sum() == pytest.approx(1.0, rel=1e-5)
    attention_summary.write_attention_images(str(tmp_path), attention)
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert set(events.Tags()["tensors"]) == {f"attention/{s}" for s in SEQUENCE_LENGTHS}


@pytest.mark.parametrize("preset", ["dnn-base", "din"])
def test_models_without_attention_decoders_have_no_summary(preset):
    model = build_model(small_config(preset), VOCAB_SIZES)
    features, _ = make_batch()
    model(features)
    assert attention_summary.sample_attention(model, features) == {}


def test_attention_image_scales_each_row_to_its_largest_weight():
    image = attention_summary.attention_image(np.array([[0.2, 0.1, 0.0], [0.5, 0.5, 0.0]]))
    assert image.shape == (1, 2 * attention_summary.CELL_PIXELS, 3 * attention_summary.CELL_PIXELS, 1)
    cell = attention_summary.CELL_PIXELS
    assert image[0, 0, 0, 0] == 1.0 and image[0, 0, cell, 0] == pytest.approx(0.5) and image[0, 0, 2 * cell, 0] == 0
    assert image[0, cell, 0, 0] == image[0, cell, cell, 0] == 1.0
