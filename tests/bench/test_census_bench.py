"""bench.census_bench: the Census-Income file's parsing, the stratified split, the encoder, and a
short training of funnel's MMoE on a subset."""

import numpy as np
import pandas as pd
import pytest
import tf_keras

from bench import census_bench as cb


@pytest.fixture(scope="module")
def frame():
    return cb.load(rows=20000)


def test_load_keeps_39_attributes_and_the_two_labels(frame):
    assert len(frame) == 20000
    attributes = [c for c in frame.columns if c not in cb.TASKS]
    assert len(attributes) == 39 and "c7" not in frame and "c24" not in frame and "c41" not in frame
    # the file's first rows: a married woman under 50K, ..., a never married child
    assert frame.loc[0, "income"] == 0 and frame.loc[0, "marital"] == 0 and frame.loc[2, "marital"] == 1
    assert frame.loc[0, "age"] == 38 and frame.loc[0, "c1"] == "Private"
    assert 0.03 < frame["income"].mean() < 0.1 and 0.3 < frame["marital"].mean() < 0.6


def test_a_file_with_other_columns_is_refused(tmp_path):
    import gzip

    path = tmp_path / "other.gz"
    with gzip.open(path, "wt") as f:
        f.write("1, 2, 3\n")
    with pytest.raises(ValueError, match="3 columns"):
        cb.load(str(path))


def test_split_is_stratified_disjoint_and_fixed(frame):
    parts = cb.split(frame)
    assert sum(len(p) for p in parts.values()) == len(frame)
    for (income, marital), group in frame.groupby(["income", "marital"]):
        sizes = [((p["income"] == income) & (p["marital"] == marital)).sum() for p in parts.values()]
        np.testing.assert_allclose(sizes, np.array(cb.SPLIT) * len(group), atol=1)
    again = cb.split(frame)
    assert all(parts[name].equals(again[name]) for name in parts)


def test_encoder_maps_unseen_values_to_zero_and_standardises_on_train(frame):
    train = frame.iloc[:1000]
    encoder = cb.Encoder(train)
    inputs = encoder.inputs(pd.concat([train.iloc[:1], train.iloc[:1].assign(c1="never seen")]))
    assert inputs["c1"][0] > 0 and inputs["c1"][1] == 0
    np.testing.assert_allclose(encoder.inputs(train)["numeric"].mean(axis=0), 0, atol=1e-4)


def test_mmoe_learns_both_tasks_on_a_subset():
    result = cb.run_benchmark(rows=20000, seeds=[0], epochs=3, variants={"mmoe": cb.VARIANTS["mmoe"]},
                              log=lambda message: None)
    auc = result["variants"]["mmoe"]["auc"]
    assert auc["marital"]["mean"] > 0.95 and auc["income"]["mean"] > 0.8, auc
    assert result["variants"]["mmoe"]["published"] == {"income": 0.9410, "marital": 0.9926}
    assert "| mmoe |" in cb.table(result)


def test_dtn_reads_the_fields_and_crosses_chosen_attributes(frame):
    encoder = cb.Encoder(frame.iloc[:2000])
    memonet = cb.VARIANTS["dtn"]["interactions"][2]
    assert set(memonet["id_fields"]) <= set(encoder.categorical)
    model = cb.build(encoder, cb.VARIANTS["dtn"])
    predictions = model(encoder.inputs(frame.iloc[:50]))
    assert all(np.ravel(predictions[t]).shape == (50,) and np.isfinite(predictions[t]).all() for t in cb.TASKS)
    assert any("memonet" in v.name and "codebook" in v.name for v in model.trainable_variables)


@pytest.mark.parametrize("peer", list(cb.PEERS))
def test_deepctr_peers_are_one_independent_network_per_task(frame, peer):
    parts = cb.split(frame.iloc[:3000])
    encoder = cb.Encoder(parts["train"])
    model = cb.build_peer(encoder, cb.PEERS[peer])
    networks = [layer for layer in model.layers if isinstance(layer, tf_keras.Model)]
    assert len(networks) == 2  # one per task, sharing no weight
    assert not {v.ref() for v in networks[0].weights} & {v.ref() for v in networks[1].weights}
    inputs = cb.peer_inputs(encoder, parts["test"])
    assert inputs["c1"].shape == (len(parts["test"]), 1) and inputs["age_bucket"].max() <= len(encoder.boundaries[0])
    predictions = model.predict(inputs, verbose=0)
    assert set(predictions) == set(cb.TASKS)
    assert all(((p > 0) & (p < 1)).all() and p.shape == (len(parts["test"]), 1) for p in predictions.values())


@pytest.mark.heavy  # ~100 s, most of it tracing DeepCTR's graphs: `make test-all` and CI
def test_the_bench_trains_and_tables_a_peer():
    """The whole bench path of a peer (early stopping, table) on a few rows; the figures:
    bench/results/census.md."""
    peer = "deepctr DCN-M"
    result = cb.run_benchmark(rows=3000, seeds=[0], epochs=1, variants={peer: {"peer": cb.PEERS[peer]}},
                              log=lambda message: None)
    variant = result["variants"][peer]
    assert all(0 < variant["auc"][t]["mean"] <= 1 for t in cb.TASKS)
    assert variant["published"] is None and f"| {peer} |" in cb.table(result)
