"""Tests of `funnel abtest`: the replay applies the world's behaviour model, the paired bootstrap,
clear errors, and the command on the shared end-to-end run."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from models import features as F
from pipeline import abtest
from pipeline.cli import main
from simulation import SimulationConfig, simulate
from simulation.simulator import CONFIG_FILE

CONFIG = SimulationConfig()


def _frame(request_ids, positions, categories, prices, p_click_rel, p_order_rel):
    return pd.DataFrame({F.REQUEST_ID: request_ids, F.POSITION: positions, F.CATEGORY_ID: categories,
                         F.ITEM_PRICE: prices, "p_click_rel": p_click_rel, "p_order_rel": p_order_rel})


def test_replay_applies_position_page_and_neighbours_to_the_new_order():
    # One request of three items in distinct categories, re-ranked by relevance: the world's
    # examination (1/position)^0.4 moves to the new positions; no neighbour shares a category.
    frame = _frame(["r"] * 3, [1, 2, 3], ["a", "b", "c"], [10.0, 20.0, 30.0], [0.1, 0.2, 0.3], [0.01, 0.02, 0.03])
    out = abtest.replay(frame, np.array([1.0, 2.0, 3.0]), CONFIG)
    exam = np.array([1.0, 0.5 ** 0.4, (1 / 3) ** 0.4])  # positions 1, 2, 3 on page 1
    assert out.loc["r", "clicks"] == pytest.approx(0.3 * exam[0] + 0.2 * exam[1] + 0.1 * exam[2])
    assert out.loc["r", "orders"] == pytest.approx(0.03 * exam[0] + 0.02 * exam[1] + 0.01 * exam[2])
    assert out.loc["r", "gmv"] == pytest.approx(0.03 * 30 * exam[0] + 0.02 * 20 * exam[1] + 0.01 * 10 * exam[2])
    # Two items of one category are each other's neighbours: exp(-0.15) each.
    same = _frame(["r"] * 2, [1, 2], ["a", "a"], [1.0, 1.0], [0.1, 0.2], [0.0, 0.0])
    assert abtest.replay(same, np.zeros(2), CONFIG).loc["r", "clicks"] == pytest.approx(
        np.exp(-0.15) * (0.1 + 0.2 * exam[1]))


def test_replay_keeps_requests_apart_and_ties_in_the_logged_order():
    frame = _frame(["x", "y", "x", "y"], [2, 1, 1, 2], ["a", "b", "c", "d"], [1.0] * 4,
                   [0.4, 0.3, 0.2, 0.1], [0.0] * 4)
    out = abtest.replay(frame, np.zeros(4), CONFIG)  # all tied: the logged order
    second = 0.5 ** 0.4
    assert list(out.index) == ["x", "y"]
    assert out.loc["x", "clicks"] == pytest.approx(0.2 + 0.4 * second)
    assert out.loc["y", "clicks"] == pytest.approx(0.3 + 0.1 * second)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("abtest_world"))
    simulate(out, SimulationConfig(users=80, days=2, seed=11))
    return out


def _log(out, name):
    directory = os.path.join(out, name)
    return pd.concat([pd.read_json(os.path.join(directory, f), lines=True, dtype=False)
                      for f in sorted(os.listdir(directory))], ignore_index=True)


def test_replaying_the_logged_order_gives_the_simulators_own_probabilities(small_world):
    """The replay and the simulator share one behaviour model: the logged order replayed gives,
    per request, the sums of the truth log's position-dependent p_click and p_order."""
    truth, world = abtest.world_truth(small_world)
    impressions = _log(small_world, "impressions").merge(
        _log(small_world, "items")[["item_id", "category_id", "price"]], on="item_id")
    frame = impressions.rename(columns={"price": F.ITEM_PRICE}).merge(
        _log(small_world, "truth"), on=F.IMPRESSION_ID)
    assert len(frame) == len(impressions) == len(truth) > 1000
    out = abtest.replay(frame, -frame[F.POSITION].to_numpy().astype(float), world)
    expected = frame.groupby(F.REQUEST_ID)[["p_click", "p_order"]].sum()
    np.testing.assert_allclose(out["clicks"], expected.loc[out.index, "p_click"], rtol=1e-9)
    np.testing.assert_allclose(out["orders"], expected.loc[out.index, "p_order"], rtol=1e-9, atol=1e-15)
    # Ranked by the truth itself, the same requests yield more expected clicks.
    better = abtest.replay(frame, frame["p_click_rel"].to_numpy(), world)
    assert better["clicks"].sum() > out["clicks"].sum()


def _sums(clicks, orders):
    return pd.DataFrame({"clicks": clicks, "orders": orders, "gmv": orders * 50.0},
                        index=[f"r{i}" for i in range(len(clicks))])


def test_a_model_against_itself_has_zero_lift_inside_its_interval():
    rng = np.random.default_rng(0)
    a = _sums(rng.uniform(0.2, 1.5, 500), rng.uniform(0.0, 0.05, 500))
    lift = abtest.paired_lift(a, a.copy(), samples=300)
    for metric in abtest.METRICS:
        assert lift[metric]["relative"] == 0.0
        low, high = lift[metric]["ci95"]
        assert low <= 0.0 <= high


def test_a_real_lift_is_found_and_noise_is_not():
    rng = np.random.default_rng(1)
    clicks, orders = rng.uniform(0.2, 1.5, 800), rng.uniform(0.0, 0.05, 800)
    a = _sums(clicks, orders)
    better = abtest.paired_lift(a, _sums(clicks * 1.03, orders * 1.10), samples=500)
    assert better["clicks"]["relative"] == pytest.approx(0.03)
    assert better["orders"]["relative"] == pytest.approx(0.10)
    assert better["cvr"]["relative"] == pytest.approx(1.10 / 1.03 - 1)
    for metric in ("clicks", "orders", "gmv"):
        assert better[metric]["ci95"][0] > 0.0  # excludes zero
    # B differs from A by zero-mean noise per request: its interval holds zero.
    noisy = _sums(clicks + rng.normal(0, 0.05, 800), orders)
    low, high = abtest.paired_lift(a, noisy, samples=500)["clicks"]["ci95"]
    assert low < 0.0 < high and high - low < 0.02
    with pytest.raises(ValueError, match="same requests"):
        abtest.paired_lift(a, a.iloc[:-1], samples=100)


def test_logs_without_truth_or_world_config_are_refused_naming_what_is_missing(small_world, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "impressions").mkdir()
    with pytest.raises(abtest.AbtestError, match=r"truth/.*simulation_config.json"):
        abtest.world_truth(str(real))
    os.symlink(os.path.join(small_world, "truth"), real / "truth")
    with pytest.raises(abtest.AbtestError, match=CONFIG_FILE) as caught:
        abtest.world_truth(str(real))
    assert "truth/" not in str(caught.value)


def test_the_command_refuses_one_model_and_real_logs(small_world, tmp_path, capsys):
    assert main(["abtest", "--logs", small_world, "--model", str(tmp_path)]) == 2
    assert "exactly two models" in capsys.readouterr().err
    (tmp_path / "logs").mkdir()
    model = os.path.join(small_world, "not-a-model")
    assert main(["abtest", "--logs", str(tmp_path / "logs"), "--model", model, "--model", model]) == 2
    console = capsys.readouterr()
    assert "not a SavedModel" in console.err
    assert console.out == ""  # refused before the ingest and its log
    for flags, message in [(["--seed", "-1"], "--seed -1: the bootstrap's seed is a non-negative integer"),
                           (["--bootstrap-samples", "99"], "--bootstrap-samples must be at least 100")]:
        assert main(["abtest", "--logs", str(tmp_path / "logs"), "--model", model, "--model", model, *flags]) == 2
        console = capsys.readouterr()
        assert message in console.err and console.out == ""


def test_abtest_of_the_e2e_run(e2e_run, pushed_model, tmp_path, capsys):
    """The pushed model (B) against the run's DNN(Base) (A) on the run's eval day."""
    from pipeline import report

    root, pipeline_root = e2e_run
    store = report.run_store(pipeline_root)
    baseline = os.path.join(report._output(store, "BaselineTrainer", "model"), "Format-Serving")
    out = tmp_path / "ab.json"
    assert main(["abtest", "--logs", str(root / "logs"), "--work", str(root / "work"), "--model", baseline,
                 "--model", pushed_model, "--out", str(out), "--bootstrap-samples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "lift of B over A" in printed and pushed_model in printed
    result = json.loads(out.read_text())
    assert result["arms"]["B"]["model"] == pushed_model and result["arms"]["A"]["model"] == baseline
    assert result["requests"] > 10 and result["requests_without_truth"] == 0
    for metric in ("clicks", "orders", "gmv"):
        lift = result["lift"][metric]
        assert lift["relative"] == pytest.approx(result["arms"]["B"][metric] / result["arms"]["A"][metric] - 1)
        assert lift["ci95"][0] <= lift["relative"] <= lift["ci95"][1]
    # The logging policy replayed is the truth's own expected clicks of the eval day.
    truth, _ = abtest.world_truth(str(root / "logs"))
    eval_files = abtest.eval_example_files(str(root / "work"))
    from serving.batch_predict import score_examples

    ids = score_examples(pushed_model, eval_files)[F.IMPRESSION_ID]
    p_click = _log(str(root / "logs"), "truth").set_index(F.IMPRESSION_ID).loc[ids, "p_click"]
    assert result["reference"][abtest.LOGGING_POLICY]["clicks"] == pytest.approx(
        p_click.sum() / result["requests"], rel=1e-6)


def test_abtest_ingests_the_logs_when_no_run_is_given(small_world, pushed_model):
    """Without --work the logs' last day is ingested here; a model against itself lifts nothing."""
    result = abtest.abtest(small_world, [pushed_model, pushed_model], samples=200)
    truth = _log(small_world, "truth")
    impressions = _log(small_world, "impressions")
    last_day = impressions["ts"] >= impressions["ts"].max() // 86_400 * 86_400
    assert result["impressions"] == int(last_day.sum()) and result["requests_without_truth"] == 0
    assert result["requests"] == impressions.loc[last_day, F.REQUEST_ID].nunique()
    expected = truth.set_index(F.IMPRESSION_ID).loc[impressions.loc[last_day, F.IMPRESSION_ID], "p_click"].sum()
    assert result["reference"][abtest.LOGGING_POLICY]["clicks"] * result["requests"] == pytest.approx(expected)
    for metric in abtest.METRICS:
        assert result["lift"][metric]["relative"] == 0.0 and result["lift"][metric]["ci95"] == [0.0, 0.0]
