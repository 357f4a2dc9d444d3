import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import features as F
from models.heads.esm2 import ESM2Heads
from models.heads.esmm import ESMMHeads
from models.heads.independent import IndependentHeads
from models.model import build_model, compile_model
from tests.models.batch import VOCAB_SIZES, make_batch, small_config


def _logit(p):
    return tf.constant([[np.log(p / (1 - p))]], tf.float32)


def test_esm2_composition_equals_the_formulas():
    heads = ESM2Heads([F.CLICK, F.DACTION, F.ORDER])
    y1, y2, y3, y4 = 0.2, 0.3, 0.6, 0.1
    out = heads({t: _logit(p) for t, p in zip(heads.towers, (y1, y2, y3, y4))})
    expected = {F.CLICK: y1,                                 # pCTR (eq. 1)
                F.DACTION: y1 * y2,                          # pCTAVR (eq. 2)
                "cvr": y2 * y3 + (1 - y2) * y4,              # pCVR (eq. 3)
                F.ORDER: y1 * (y2 * y3 + (1 - y2) * y4)}     # pCTCVR (eq. 4)
    assert set(out) == set(expected) == set(heads.outputs)
    for name, value in expected.items():
        np.testing.assert_allclose(out[name].numpy()[0, 0], value, rtol=1e-5)


def test_esmm_composition():
    heads = ESMMHeads([F.CLICK, F.ORDER])
    out = heads({"ctr": _logit(0.1), "cvr": _logit(0.25)})
    np.testing.assert_allclose([out[F.CLICK][0, 0], out["cvr"][0, 0], out[F.ORDER][0, 0]], [0.1, 0.25, 0.025],
                               rtol=1e-5)


def test_bias_reaches_only_the_bias_towers():
    u = {t: _logit(0.3) for t in ("click", "order")}
    independent = IndependentHeads(["click", "order"])(u, bias=1.0)
    for t in ("click", "order"):
        np.testing.assert_allclose(independent[t][0, 0], 1 / (1 + np.exp(-(np.log(0.3 / 0.7) + 1.0))), rtol=1e-5)
    esm2 = ESM2Heads([F.CLICK, F.DACTION, F.ORDER])
    logits = {t: _logit(0.3) for t in esm2.towers}
    plain, biased = esm2(logits), esm2(logits, bias=1.0)
    assert biased[F.CLICK][0, 0] > plain[F.CLICK][0, 0]
    np.testing.assert_allclose(biased["cvr"], plain["cvr"])  # post-click stages: not position-dependent
    np.testing.assert_allclose(biased[F.ORDER] / biased[F.CLICK], plain[F.ORDER] / plain[F.CLICK], rtol=1e-5)


def test_examination_bias_scales_the_probabilities_of_the_bias_towers():
    # PAL: p = sigmoid(u) x p_seen, y_b = log p_seen
    u = {t: _logit(0.3) for t in ("click", "order")}
    seen = tf.constant([[np.log(0.25)]], tf.float32)
    independent = IndependentHeads(["click", "order"], bias_combine="examination")
    out = independent(u, bias=seen)
    for t in ("click", "order"):  # an order needs the item seen too
        np.testing.assert_allclose(out[t][0, 0], 0.3 * 0.25, rtol=1e-5)
    np.testing.assert_allclose(independent(u, bias=0.0)["click"][0, 0], 0.3, rtol=1e-5)  # 0: seen for sure
    np.testing.assert_allclose(independent(u)["click"][0, 0], 0.3, rtol=1e-5)
    esmm = ESMMHeads([F.CLICK, F.ORDER], bias_combine="examination")
    out = esmm({"ctr": _logit(0.1), "cvr": _logit(0.25)}, bias=seen)
    np.testing.assert_allclose([out[F.CLICK][0, 0], out["cvr"][0, 0], out[F.ORDER][0, 0]],
                               [0.1 * 0.25, 0.25, 0.1 * 0.25 * 0.25], rtol=1e-5)
    assert esmm.get_config()["bias_combine"] == "examination"
    with pytest.raises(ValueError, match="bias_combine must be one of"):
        IndependentHeads(["click", "order"], bias_combine="product")


def test_heads_refuse_other_tasks():
    with pytest.raises(ValueError):
        ESM2Heads([F.CLICK, F.ORDER])
    with pytest.raises(ValueError):
        small_config("esmm", tasks=[F.CLICK, F.CART])


def _bce(y, p, eps=1e-7):
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_esm2_loss_is_eq_11_over_all_impressions():
    weights = {F.CLICK: 1.0, F.DACTION: 0.5, F.ORDER: 2.0}
    model = compile_model(build_model(small_config("esm2", loss_weights=weights), VOCAB_SIZES))
    features, labels = make_batch(16, seed=4)
    predictions = model(features, training=False)
    assert set(predictions) == {F.CLICK, F.DACTION, F.ORDER}
    loss = float(model.compute_loss(features, labels, predictions))
    expected = sum(w * _bce(labels[t].numpy(), predictions[t].numpy()) for t, w in weights.items())
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # and the composition holds inside the model, with the bias tower on the click tower only
    logits = model.network(features)
    y = {t: tf.sigmoid(u).numpy() for t, u in logits.items()}
    y1 = tf.sigmoid(logits["ctr"] + model.bias_logit(features)).numpy()
    np.testing.assert_allclose(predictions[F.CLICK], y1, rtol=1e-5)
    np.testing.assert_allclose(predictions[F.DACTION], y1 * y["daction_given_click"], rtol=1e-5)
    cvr = y["daction_given_click"] * y["buy_given_daction"] + (1 - y["daction_given_click"]) * y["buy_given_oaction"]
    np.testing.assert_allclose(predictions[F.ORDER], y1 * cvr, rtol=1e-5)


def test_examination_model_trains_on_sigmoid_u_times_p_seen():
    model = compile_model(build_model(small_config("dmt", bias_combine="examination", bias_output_dropout=0.0),
                                      VOCAB_SIZES))
    features, labels = make_batch(16, seed=6)
    predictions = model(features, training=False)
    seen = model.bias_logit(features).numpy()
    assert (seen <= 0).all()  # log p_seen
    for t, u in model.network(features).items():
        np.testing.assert_allclose(predictions[t], tf.sigmoid(u).numpy() * np.exp(seen), rtol=1e-5)
    loss = float(model.compute_loss(features, labels, predictions))
    assert np.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match="bias_combine must be one of"):
        small_config("dmt", bias_combine="sum")


def test_esmm_trains_on_click_and_order():
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(small_config("esmm"), VOCAB_SIZES), keras.optimizers.Adam(1e-2))
    features, labels = make_batch(32, seed=5)
    history = model.fit(tf.data.Dataset.from_tensors((features, labels)).repeat(3), verbose=0).history
    assert {"click_loss", "order_loss"} <= set(history) and "cvr_loss" not in history
