"""bench.peers_bench: DeepCTR's inputs from funnel's transformed features, and a tiny run."""

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from bench import peers_bench as pb
from models import features as F
from models import metrics
from models import preprocessing as P


def _features(batch: int = 3):
    out = {name: tf.constant([[i] for i in range(batch)], tf.int64) for name in pb.ID_FEATURES}
    out.update({P.bucket_feature("item_price"): tf.constant([[0], [4], [9]], tf.int64)})
    out.update({name: tf.zeros([batch, 1]) for name in F.DENSE_FEATURES})
    out[F.POSITION], out[F.PAGE] = tf.constant([[1], [12], [40]], tf.int64), tf.constant([[1], [2], [4]], tf.int64)
    for sequence, (max_length, _) in F.SEQUENCES.items():
        # row 0 empty, row 1 two elements (ids 0 and 7), row 2 over-long (max length + 2)
        rows = [[], [0, 7], list(range(max_length + 2))]
        indices = [(r, c) for r, row in enumerate(rows) for c in range(len(row))]
        values = [v for row in rows for v in row]
        for field in F.SEQUENCE_ELEMENT_FIELDS:
            out[F.sequence_feature(sequence, field)] = tf.SparseTensor(
                np.array(indices, np.int64), np.array(values, np.int64), [batch, max_length + 2])
    return out


@pytest.mark.parametrize("attend", [False, True])
def test_peer_inputs_shift_ids_pad_sequences_and_keep_position_only_when_asked(attend):
    inputs = pb.to_peer_inputs(_features(), ["item_price"], with_bias=False, attend=attend)
    assert F.POSITION not in inputs and F.PAGE not in inputs
    np.testing.assert_array_equal(inputs[F.ITEM_ID].numpy(), [[1], [2], [3]])  # 0 is reserved for padding
    np.testing.assert_array_equal(inputs[P.bucket_feature("item_price")].numpy(), [[1], [5], [10]])
    click = inputs["hist_item_id" if attend else "click_seq_item_id"].numpy()
    max_length = F.SEQUENCES[F.SEQUENCE_CLICK][0]
    assert click.shape == (3, max_length)
    np.testing.assert_array_equal(click[0], np.zeros(max_length))
    np.testing.assert_array_equal(click[1, :3], [1, 8, 0])
    np.testing.assert_array_equal(click[2], np.arange(max_length) + 1)  # truncated to the max length
    assert ("seq_length" in inputs) == attend
    if attend:
        np.testing.assert_array_equal(inputs["seq_length"].numpy(), [[0], [2], [max_length]])
    with_bias = pb.to_peer_inputs(_features(), ["item_price"], with_bias=True, attend=attend)
    np.testing.assert_array_equal(with_bias[F.POSITION].numpy(), [[1], [12], [40]])


@pytest.mark.parametrize("name", ["DCNMix", "EDCN"])
def test_the_feature_crossing_peers_score_funnels_inputs(name):
    vocab_sizes = {n: 50 for n in pb.ID_FEATURES}
    columns = pb.feature_columns(vocab_sizes, 10, ["item_price"], with_bias=True, attend=False)
    model = pb.build_peer(name, columns, F.CLICK)
    inputs = pb.to_peer_inputs(_features(), ["item_price"], with_bias=True, attend=False)
    read = {i.name.split(":")[0] for i in model.inputs}
    # EDCN takes no dense input (DeepCTR: support_dense=False); DCN-M reads every feature
    assert (F.DENSE_FEATURES[0] in read) == (name == "DCNMix") and F.POSITION in read and "click_seq_item_id" in read
    p = model({k: v for k, v in inputs.items() if k in read}).numpy()
    assert p.shape == (3, 1) and ((p > 0) & (p < 1)).all()


class _TinyData:
    """Stands in for the transformed examples: the same three rows as every batch of both splits."""
    vocab_sizes = {name: 50 for name in pb.ID_FEATURES}

    def dataset(self, split, batch_size, shuffle, seed):
        features = _features()
        features.update({F.CLICK: tf.constant([[1], [0], [0]], tf.int64), F.ORDER: tf.constant([[0], [0], [1]], tf.int64),
                         F.IMPRESSION_ID: tf.constant([[b"a"], [b"b"], [b"c"]])})
        return tf.data.Dataset.from_tensors(features).repeat(2)  # two batches per epoch


@pytest.mark.parametrize("name", ["ESMM", "DIN"])
def test_a_peer_trains_with_funnels_epochs_and_per_epoch_rates(name):
    settings = {"batch_size": 3, "epochs": 3, "learning_rate": [0.01, 0.002], "seed": 0}
    trained = pb.train_peer(name, _TinyData(), settings, ["item_price"], 10, with_bias=False,
                            task=None if name == "ESMM" else F.CLICK)
    assert trained["train_steps"] == 3 * 2  # every epoch, not one
    assert trained["final_learning_rate"] == pytest.approx(0.002)  # the list's last rate repeats
    assert list(trained["scores"][F.IMPRESSION_ID]) == ["a", "b", "c"] * 2
    assert trained["optimizer"] == "LazyAdam"  # unset: the Trainer's default, lazy_adam


def test_a_peer_compiles_with_the_trainers_optimizer_setting():
    settings = {"batch_size": 3, "epochs": 1, "learning_rate": 0.01, "seed": 0, "optimizer": "adam"}
    assert pb.train_peer("DIN", _TinyData(), settings, ["item_price"], 10, with_bias=False,
                         task=F.CLICK)["optimizer"] == "Adam"


@pytest.mark.e2e
@pytest.mark.heavy
def test_peers_and_funnel_train_on_the_same_examples(e2e_examples, tmp_path, monkeypatch):
    from pipeline import ablate
    from pipeline.config import load_config

    root, pipeline_root = e2e_examples
    data = ablate.data_artifacts(os.path.join(pipeline_root, "metadata.sqlite"))
    monkeypatch.setattr(ablate, "prepare_data", lambda *args, **kwargs: {"key": "e2e", **data})
    config = load_config()
    config["trainer"].update(batch_size=256, epochs=1, learning_rate=0.001)
    result = pb.run_benchmark(str(root / "logs"), str(tmp_path), peers=("ESMM", "DIN"), presets=("dnn-base",),
                              config=config, log=lambda message: None)
    names = [row["model"] for row in result["rows"]]
    assert names == ["deepctr ESMM", "deepctr ESMM +position", "deepctr DIN", "deepctr DIN +position",
                     "funnel dnn-base (served)"]
    for row in result["rows"]:
        for task in (F.CLICK, F.ORDER):
            figures = row["metrics"][task]
            assert 0.0 <= figures["auc"] <= 1.0
            assert {"click_efficiency", "click_ndcg@10", "purchase_ndcg@10"} <= set(figures)
        assert all(v > 0 for v in row["examples_per_second"].values())
    # DIN is single-task: one model (and one speed) per task
    assert set(result["rows"][2]["examples_per_second"]) == {F.CLICK, F.ORDER}
    assert "score" in result["rows"][-1] and result["eval_examples"] > 0
    assert 0 <= result["eval_positives"][F.ORDER] <= result["eval_positives"][F.CLICK] < result["eval_examples"]
    # each peer against funnel's served network, paired on the same eval impressions
    assert result["paired_references"] == ["funnel dnn-base (served)"]  # dnn-base has no training-time network
    for row in result["rows"][:-1]:
        for task in (F.CLICK, F.ORDER):
            paired = row["against"]["funnel dnn-base (served)"][task]
            assert paired["auc_difference"] == pytest.approx(
                row["metrics"][task]["auc"] - result["rows"][-1]["metrics"][task]["auc"], abs=1e-9)
            assert paired["examples"] == result["eval_examples"] and paired["standard_error"] > 0
    result["command"] = "python -m bench.peers_bench --peers ESMM DIN"
    table = pb.markdown(result)
    assert "Paired against funnel dnn-base (served)" in table
    assert all(f"| {name} |" in table for name in names)
    # the file `make bench-peers` writes over the committed one says what made it
    assert result["command"] in table and f"{result['eval_examples']:,} eval examples" in table
    assert f"batch {config['trainer']['batch_size']}," in table
    # a second run on the same examples and settings reuses every peer's figures (and dnn-base's)
    monkeypatch.setattr(pb, "train_peer", lambda *args, **kwargs: pytest.fail("retrained a cached peer"))
    again = pb.run_benchmark(str(root / "logs"), str(tmp_path), peers=("ESMM", "DIN"), presets=("dnn-base",),
                             config=config, log=lambda message: None)
    dump = lambda rows: json.dumps([(r["metrics"], r["examples_per_second"], r.get("against"))  # noqa: E731
                                    for r in rows],
                                   sort_keys=True, default=float)
    assert dump(again["rows"]) == dump(result["rows"])


def test_each_row_is_tested_against_the_reference_on_the_impressions_both_scored():
    rng = np.random.default_rng(0)
    ids = pd.DataFrame({F.IMPRESSION_ID: [f"i{k}" for k in range(400)],
                        "label_click": rng.random(400) < 0.3, "label_order": rng.random(400) < 0.1})
    index = ids[F.IMPRESSION_ID]
    noise = lambda: rng.normal(size=400)  # noqa: E731
    reference = pd.DataFrame({F.CLICK: ids["label_click"] + noise(), F.ORDER: ids["label_order"] + noise()}).set_index(index)
    # a single-task peer: one frame per task, joined by impression_id (the order model scored fewer)
    clicks = pd.DataFrame({F.CLICK: ids["label_click"] * 2 + noise()}).set_index(index)
    orders = pd.DataFrame({F.ORDER: ids["label_order"] * 0.5 + noise()}).set_index(index).iloc[:300]
    scores = {"funnel dmt (served)": reference, "deepctr DIN": pd.concat([clicks, orders], axis=1)}
    scores["funnel dmt (training-time)"] = reference * 0.5
    rows = [{"model": "deepctr DIN"}, {"model": "funnel dmt (served)"}, {"model": "funnel dmt (training-time)"}]
    for name in ("funnel dmt (served)", "funnel dmt (training-time)"):
        pb.against_reference(rows, scores, ids, name)
    assert list(rows[1]["against"]) == ["funnel dmt (training-time)"]
    assert list(rows[2]["against"]) == ["funnel dmt (served)"]
    assert rows[2]["against"]["funnel dmt (served)"][F.CLICK]["auc_difference"] == 0  # the same ranking
    against = rows[0]["against"]
    assert against["funnel dmt (training-time)"] == against["funnel dmt (served)"]
    click, order = against["funnel dmt (served)"][F.CLICK], against["funnel dmt (served)"][F.ORDER]
    assert click["examples"] == 400 and order["examples"] == 300
    assert click["auc_difference"] == pytest.approx(
        metrics.auc(ids["label_click"], clicks[F.CLICK]) - metrics.auc(ids["label_click"], reference[F.CLICK]))
    assert click["auc_difference"] > 0 and click["p_value"] < 0.01  # the peer's clicks are twice as separated
    assert order["auc_difference"] < 0
    result = {"rows": [dict(row, metrics={}, examples_per_second={}) for row in rows],
              "paired_references": ["funnel dmt (served)", "funnel dmt (training-time)"]}
    table = pb.markdown(result)
    assert "Paired against funnel dmt (served)" in table and "Paired against funnel dmt (training-time)" in table
    assert (f"| deepctr DIN | {click['auc_difference']:+.4f} ±{click['standard_error']:.4f} | "
            f"{click['p_value']:.3f} | {order['auc_difference']:+.4f} ±{order['standard_error']:.4f} |") in table


def test_the_table_says_what_made_it():
    result = {"command": "python -m bench.peers_bench --logs L --work W --peers BST", "logs": "/logs",
              "settings": {"batch_size": 512, "epochs": 2, "learning_rate": [0.001, 0.0001], "seed": 0},
              "eval_examples": 30422, "eval_positives": {F.CLICK: 1469, F.ORDER: 66}, "wall_seconds": 2401.2,
              "date": "2026-12-02T23:00:00+00:00",
              "rows": [{"model": "deepctr BST", "metrics": {F.CLICK: {"auc": 0.7007, "click_efficiency": 0.7797},
                                                             F.ORDER: {"auc": 0.8723}},
                        "examples_per_second": {F.CLICK: 2939.4, F.ORDER: 3010.0}}]}
    table = pb.markdown(result)
    assert result["command"] in table and "30,422 eval examples (1,469 clicks, 66 orders)" in table
    assert "2,401 s wall" in table
    assert "batch 512, 2 epoch(s), learning rate [0.001, 0.0001], seed 0" in table
    assert "| deepctr BST | 0.7007 | 0.8723 | - | 0.7797 | - | - | - | 2939 / 3010 |" in table


def test_seed_sets_every_models_training_seed(tmp_path, monkeypatch):
    seen = {}

    def run(logs, work, peers, presets, config=None, log=print):
        seen["seed"] = config["trainer"]["seed"]
        return {"rows": [], "settings": {k: config["trainer"][k] for k in ("batch_size", "epochs", "learning_rate", "seed")}}

    monkeypatch.setattr(pb, "run_benchmark", run)
    out, work = tmp_path / "peers.json", str(tmp_path / "work")
    pb.main(["--logs", "L", "--work", work, "--out", str(out), "--seed", "2"])
    assert seen["seed"] == 2 and json.loads(out.read_text())["settings"]["seed"] == 2
    assert "--seed 2" in json.loads(out.read_text())["command"] and "seed 2" in (tmp_path / "peers.md").read_text()
    pb.main(["--logs", "L", "--work", work, "--out", str(out)])
    assert seen["seed"] == 0  # pipeline/config.yaml's


def test_the_console_shows_the_benchs_lines_and_the_log_file_the_libraries(tmp_path, monkeypatch, capfd):
    def run(logs, work, peers, presets, config=None, log=print):
        log("[peers] deepctr ESMM: 30000 examples/s, click AUC 0.7000")
        logging.getLogger("absl").warning("Tables initialized inside a tf.function")  # TF Transform's
        os.write(2, b"I0000 cuda_dnn.cc: Unable to register cuDNN factory\n")  # a C++ runtime's line
        return {"rows": [], "settings": {k: config["trainer"][k] for k in ("batch_size", "epochs", "learning_rate", "seed")}}

    monkeypatch.setattr(pb, "run_benchmark", run)
    work = tmp_path / "work"
    pb.main(["--logs", "L", "--work", str(work), "--out", str(tmp_path / "peers.json")])
    shown = capfd.readouterr()
    console = shown.out + shown.err
    assert "[peers] deepctr ESMM: 30000 examples/s" in console and str(work / "peers" / "peers.log") in console
    assert "Tables initialized" not in console and "cuDNN" not in console
    logged = (work / "peers" / "peers.log").read_text()
    assert "Tables initialized inside a tf.function" in logged and "Unable to register cuDNN factory" in logged


def test_config_file_sets_the_eval_split_and_the_table_says_so(tmp_path, monkeypatch, capsys):
    seen = {}

    def run(logs, work, peers, presets, config=None, log=print):
        seen["ingest"] = dict(config["ingest"])
        return {"rows": [], "eval_days": config["ingest"]["eval_days"], "eval_examples": 200_000,
                "settings": {k: config["trainer"][k] for k in ("batch_size", "epochs", "learning_rate", "seed")}}

    monkeypatch.setattr(pb, "run_benchmark", run)
    config = tmp_path / "long-eval.yaml"
    config.write_text("ingest:\n  eval_days: 7\n")
    out = tmp_path / "peers.json"
    pb.main(["--logs", "L", "--work", str(tmp_path / "work"), "--out", str(out), "--config", str(config)])
    assert seen["ingest"]["eval_days"] == 7 and seen["ingest"]["attribution_window_seconds"] == 86400
    assert "200,000 eval examples from the logs' last 7 day(s);" in (tmp_path / "peers.md").read_text()
    assert f"--config {config}" in json.loads(out.read_text())["command"]
    config.write_text("ingest: {eval_days: 7\n")  # a broken file: refused with its name, nothing run
    seen.clear()
    with pytest.raises(SystemExit) as refused:
        pb.main(["--logs", "L", "--work", str(tmp_path / "work"), "--out", str(out), "--config", str(config)])
    assert refused.value.code == 2 and seen == {} and f"{config}: not YAML" in capsys.readouterr().err
