"""Every registered architecture: builds, trains a step, exports without its bias tower,
reloads, and its shared-encoder `rank` path equals per-example serving."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import features as F
from models import presets
from models.config import ModelConfig
from models.export import export_serving_module
from models.model import build_model, compile_model
from models.network import SCORE
from tests.models.batch import VOCAB_SIZES, make_batch, rank_batch, small_config


def test_every_preset_is_listed_with_its_paper():
    described = presets.describe()
    assert [name for name, _, _ in described] == presets.names()
    assert {"dmt", "dmt-paper", "dnn-base", "din", "shared-bottom", "mmoe", "ple", "hmoe", "hmoe-nostopgrad",
            "immoe", "esmm", "esm2"} <= set(presets.names())
    assert all(summary and paper for _, summary, paper in described)


# Presets that are another preset's network with one part changed, that part tested on its own:
# dtn-trim only trains differently (train, cut and retrain: tests/models/test_trainer_e2e.py) and
# dmt-fusion only fuses differently (the fusion network's alternate training and its export in
# both signatures: tests/models/test_fusion_network.py), so each network is tested once here.
SAME_NETWORK = {"dtn-trim": ("dtn", "mixture"), "dmt-fusion": ("dmt", "fusion")}


def test_same_network_presets_differ_only_in_one_part():
    for name, (twin, part) in SAME_NETWORK.items():
        config, other = ModelConfig.from_dict({"preset": name}).to_dict(), ModelConfig.from_dict({"preset": twin}).to_dict()
        assert config[part] != other[part], name
        if name == "dtn-trim":  # the mixture differs only in its trim threshold
            assert config[part].pop("trim_threshold") > 0 and other[part].pop("trim_threshold") == 0
            assert config[part] == other[part]
        else:
            assert config[part]["type"] == "network" and other[part]["type"] != "network"
        config.pop(part), other.pop(part)
        assert {**config, "preset": twin} == other, name


@pytest.mark.parametrize("name", [n for n in presets.names() if n not in SAME_NETWORK])
def test_preset_trains_exports_and_ranks(name, tmp_path):
    keras.utils.set_random_seed(0)
    config = small_config(name)
    assert config.preset == name
    # One step run eagerly: tracing Keras' training step is most of a graph-mode step's cost here
    # (dtn: 50 s traced against 6 s eagerly). The traced step is tested on the DMT and DNN(Base)
    # in test_model.py and, per architecture, in the Trainer's own runs (test_trainer_e2e.py);
    # the serving functions below are traced and exported whatever the training mode.
    model = compile_model(build_model(config, VOCAB_SIZES), keras.optimizers.Adam(1e-2), run_eagerly=True)
    features, labels = make_batch(12, seed=1)
    before = [v.numpy().copy() for v in model.network.trainable_variables] if model.built else None
    history = model.fit(tf.data.Dataset.from_tensors((features, labels)), verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert before is None or any(not np.allclose(a, v.numpy()) for a, v in zip(before, model.network.trainable_variables))

    reference = 0.25 if model.bias_tower is not None else None
    module = export_serving_module(model, reference_bias=reference)
    assert not any("bias_tower" in v.name for v in module.variables)
    path = str(tmp_path / name)
    tf.saved_model.save(module, path)
    with open(f"{path}/saved_model.pb", "rb") as f:
        assert b"bias_tower" not in f.read()
    loaded = tf.saved_model.load(path)

    requests, num_candidates = 3, 4
    per_request, per_example = rank_batch(requests, num_candidates)
    signature = module.input_signature()
    served = loaded.serve({n: per_example[n] for n in signature})
    ranked = loaded.serve_rank({n: per_request[n] for n in signature}, tf.constant(num_candidates))
    expected = model.serving_outputs(per_example, bias=reference)
    assert set(served) == set(ranked) == set(config.served_outputs) | {SCORE}
    for output in served:
        np.testing.assert_allclose(served[output], expected[output], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ranked[output].numpy().reshape(-1), served[output].numpy().reshape(-1),
                                   atol=1e-5, rtol=0)
    if config.uses_scenario:
        assert F.SCENARIO in signature


def test_preset_overrides_merge_or_replace():
    c = ModelConfig.from_dict({"preset": "hmoe", "mixture": {"num_experts": 7}})
    assert c.mixture["type"] == "hmoe" and c.mixture["num_experts"] == 7 and c.mixture["stop_gradient"]
    c = ModelConfig.from_dict({"preset": "hmoe", "mixture": {"type": "ple", "levels": 1}})
    assert c.mixture["type"] == "ple" and c.mixture["levels"] == 1 and "stop_gradient" not in c.mixture
    c = ModelConfig.from_dict({"preset": "dnn-base", "tasks": ["click"]})
    assert c.sequences == {} and c.bias_features == "none" and c.tasks == ["click"]
    assert ModelConfig.from_dict({"preset": "dmt"}).mixture == ModelConfig.from_dict({}).mixture
    assert ModelConfig.from_dict({"preset": "immoe"}).mixture == ModelConfig.from_dict({}).mixture
    assert ModelConfig.from_dict({"preset": "mmoe"}).mixture["type"] == "mmoe"
    paper = ModelConfig.from_dict({"preset": "dmt-paper"})
    assert paper.trainer == {"batch_size": 2048, "epochs": 2, "learning_rate": [0.001, 0.0001]}
    assert paper.mixture["expert_units"] == [512, 256, 128] and paper.example_weights == {"click": 15, "order": 400}
    assert ModelConfig.from_dict(paper.to_dict()) == paper


@pytest.mark.parametrize("section", [
    {"preset": "no-such-preset"},
    {"model_type": "dnn_base"},
    {"mixture": {"type": "moe"}},
    {"mixture": {"type": "ple", "num_experts": 3}},
    {"heads": {"type": "esm2"}},  # tasks must be click, daction, order
    {"fusion": {"type": "weighted", "weights": {"cvr": 1.0}}},  # independent heads serve no cvr
    {"calibration": {"type": "reference", "position": 0}},
    {"example_weights": {"like": 2.0}},
    {"trainer": {"momentum": 0.9}},  # not a key an architecture may set
])
def test_invalid_architectures_are_rejected(section):
    with pytest.raises(ValueError):
        ModelConfig.from_dict(section)
