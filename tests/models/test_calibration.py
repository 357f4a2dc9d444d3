import numpy as np
import tensorflow as tf

from models import features as F
from models.calibration import reference_bias, reference_features
from models.export import export_serving_module
from models.model import build_model
from models.network import SCORE
from tests.models.batch import VOCAB_SIZES, make_batch, small_config

REFERENCE = {"type": "reference", "position": 1, "page": 1, "neighbors": "distinct", "examples": 10}


def test_reference_features_put_every_example_at_the_reference_slot():
    features, _ = make_batch(12, seed=3)
    category = features[F.CATEGORY_ID].numpy()
    neighbors = features[F.NEIGHBOR_CATEGORIES].numpy().copy()
    neighbors[:, 0] = category[:, 0]  # make sure some neighbours share the target's category
    features[F.NEIGHBOR_CATEGORIES] = tf.constant(neighbors)
    out = reference_features(features, {**REFERENCE, "position": 2, "page": 1})
    assert (out[F.POSITION].numpy() == 2).all() and (out[F.PAGE].numpy() == 1).all()
    moved = out[F.NEIGHBOR_CATEGORIES].numpy()
    assert not (moved == category).any()  # no same-category neighbour
    kept = neighbors != category
    np.testing.assert_array_equal(moved[kept], neighbors[kept])  # the others are kept
    observed = reference_features(features, {**REFERENCE, "neighbors": "observed"})
    np.testing.assert_array_equal(observed[F.NEIGHBOR_CATEGORIES], neighbors)


def test_reference_bias_is_the_mean_bias_logit_there():
    model = build_model(small_config(), VOCAB_SIZES)
    batches = [make_batch(6, seed=s) for s in range(3)]
    model(batches[0][0])
    dataset = [(f, y) for f, y in batches]
    b = reference_bias(model, dataset, REFERENCE)  # 10 examples: the first two batches (12 rows)
    expected = np.mean(np.concatenate([model.bias_tower(reference_features(f, REFERENCE)).numpy()
                                       for f, _ in batches[:2]]))
    np.testing.assert_allclose(b, expected, rtol=1e-5)
    assert reference_bias(model, dataset, {"type": "none"}) is None
    no_bias = build_model(small_config(bias_features="none"), VOCAB_SIZES)
    assert reference_bias(no_bias, dataset, REFERENCE) is None


def test_served_probabilities_at_the_reference_keep_each_tasks_ranking():
    model = build_model(small_config(), VOCAB_SIZES)
    features, _ = make_batch(24, seed=7)
    model(features)
    plain = export_serving_module(model)(features)
    calibrated = export_serving_module(model, reference_bias=-1.5)(features)
    logits = model.utility_logits(features)
    for task in model.tasks:
        np.testing.assert_allclose(plain[task], tf.sigmoid(logits[task]), rtol=1e-5)  # eq. 6
        np.testing.assert_allclose(calibrated[task], tf.sigmoid(logits[task] - 1.5), rtol=1e-5)
        np.testing.assert_array_equal(np.argsort(plain[task].numpy()[:, 0]), np.argsort(calibrated[task].numpy()[:, 0]))
    assert float(tf.reduce_mean(calibrated[SCORE])) < float(tf.reduce_mean(plain[SCORE]))
