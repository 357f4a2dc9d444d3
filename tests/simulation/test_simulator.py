"""Tests of the log simulator: determinism, the raw-log contract, rates, truth and labels."""

import argparse
import gzip
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from simulation import LOGS, SimulationConfig, simulate
from simulation import cli
from simulation.world import DAY

CONTRACT_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "raw_logs.yaml")
SMALL = dict(users=200, days=3)


def _files(out_dir, log):
    log_dir = os.path.join(out_dir, log)
    return sorted(os.path.join(log_dir, n) for n in os.listdir(log_dir))


def _records(path):
    """Raw records of one file, with their JSON types (no pandas coercion)."""
    if path.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _load(out_dir, log):
    frames = [pd.DataFrame(_records(p)) for p in _files(out_dir, log)]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("small"))
    return out, simulate(out, SimulationConfig(seed=7, **SMALL))


@pytest.fixture(scope="module")
def moderate(tmp_path_factory):
    """~60k impressions: enough for rates and statistical checks."""
    out = str(tmp_path_factory.mktemp("moderate"))
    summary = simulate(out, SimulationConfig(users=1000, days=4, seed=3))
    logs = {log: _load(out, log)
            for log in ("impressions", "truth", "clicks", "carts", "wishes", "orders", "users",
                        "items")}
    return out, summary, logs


def _all_bytes(out_dir):
    result = {}
    for log in LOGS:
        for path in _files(out_dir, log):
            with open(path, "rb") as f:
                result[os.path.relpath(path, out_dir)] = f.read()
    return result


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small, tmp_path):
    out, _ = small
    again = str(tmp_path / "again")
    simulate(again, SimulationConfig(seed=7, **SMALL))
    assert _all_bytes(out) == _all_bytes(again)
    other = str(tmp_path / "other")
    simulate(other, SimulationConfig(seed=8, **SMALL))
    first, second = _all_bytes(out), _all_bytes(other)
    assert first["impressions/2026-10-01.jsonl.gz"] != second["impressions/2026-10-01.jsonl.gz"]


def test_the_config_is_written_beside_the_logs_and_read_back(small):
    from simulation.simulator import CONFIG_FILE, read_config

    out, _ = small
    assert os.path.exists(os.path.join(out, CONFIG_FILE))
    assert read_config(out) == SimulationConfig(seed=7, **SMALL)
    assert read_config(out) != SimulationConfig(seed=8, **SMALL)


def test_every_file_follows_the_contract(small):
    out, _ = small
    with open(CONTRACT_PATH) as f:
        contract = yaml.safe_load(f)["logs"]
    python_types = {"string": (str,), "int": (int,), "number": (int, float)}
    for log in LOGS:
        paths = _files(out, log)
        assert paths, log
        for path in paths:
            assert path.endswith(".jsonl.gz")
            records = _records(path)
            assert records, path
            for name, spec in contract[log]["fields"].items():
                values = [r.get(name) for r in records]
                if spec.get("required"):
                    assert all(v is not None for v in values), (path, name)
                present = [v for v in values if v is not None]
                assert all(isinstance(v, python_types[spec["type"]]) and not isinstance(v, bool)
                           for v in present), (path, name)


def test_files_are_named_by_utc_day_of_their_records(small):
    out, _ = small
    assert [os.path.basename(p) for p in _files(out, "items")] == ["items.jsonl.gz"]
    assert [os.path.basename(p) for p in _files(out, "users")] == ["users.jsonl.gz"]
    start = SimulationConfig(**SMALL).start_ts
    for log in ("impressions", "clicks", "carts", "wishes", "orders"):
        for path in _files(out, log):
            ts = np.array([r["ts"] for r in _records(path)])
            day = pd.Timestamp(os.path.basename(path)[:10], tz="UTC").timestamp()
            assert ((ts >= day) & (ts < day + DAY)).all(), path
            assert ((ts >= start) & (ts < start + 3 * DAY)).all(), path


def test_impressions_are_well_formed(small):
    out, summary = small
    imp = _load(out, "impressions")
    items = set(_load(out, "items")["item_id"])
    users = _load(out, "users")
    assert len(imp) == summary["impressions"] == summary["counts"]["impressions"]
    assert imp["impression_id"].is_unique
    assert (imp["position"] >= 1).all() and (imp["page"] >= 1).all()
    assert (imp["page"] == (imp["position"] - 1) // 10 + 1).all()
    assert imp["position"].max() <= 40 and imp["page"].max() <= 4
    assert imp["item_id"].isin(items).all()
    assert imp["user_id"].isin(set(users["user_id"])).all()
    # Positions of a request are 1..n with no gaps, and its items are distinct.
    per_request = imp.groupby("request_id")["position"].agg(["min", "max", "count"])
    assert (per_request["min"] == 1).all() and (per_request["max"] == per_request["count"]).all()
    assert not imp.duplicated(["request_id", "item_id"]).any()
    assert 10 <= summary["impressions_per_request"] <= 30
    # The documented scale: ~15.6 impressions per user-day.
    assert 10 <= summary["impressions"] / (200 * 3) <= 22
    # The scenario of an impression is its user's.
    scenario = imp.merge(users, on="user_id", suffixes=("", "_user"))
    assert (scenario["scenario"] == scenario["scenario_user"]).all()
    for log in ("clicks", "carts", "wishes", "orders"):
        assert _load(out, log)["item_id"].isin(items).all(), log


def test_rates_are_realistic(moderate):
    _, s, _ = moderate
    assert 0.02 <= s["ctr"] <= 0.08
    assert 0.001 <= s["order_rate"] <= 0.005
    assert 1.5 * s["order_rate"] <= s["cart_rate"] <= 8 * s["order_rate"]
    assert 0 < s["wish_rate"] < s["cart_rate"]
    assert s["organic_clicks"] > 0.1 * s["recommended_clicks"]
    assert s["organic_orders"] > 0


def test_truth_probabilities_are_consistent(moderate):
    _, _, logs = moderate
    truth = logs["truth"]
    assert len(truth) == len(logs["impressions"]) and truth["impression_id"].is_unique
    for col in ("p_click", "p_click_rel", "p_cart", "p_order", "p_order_rel"):
        assert truth[col].between(0.0, 1.0).all(), col
    assert (truth["p_click"] <= truth["p_click_rel"]).all()
    assert (truth["p_cart"] <= truth["p_click"]).all()
    assert (truth["p_order"] <= truth["p_click"]).all()
    # p_order_rel = p_click_rel * P(order | click) and p_order = p_click * P(order | click).
    assert (truth["p_order"] <= truth["p_order_rel"]).all()
    assert (truth["p_order_rel"] <= truth["p_click_rel"]).all()
    # (the truth is written with 15 decimals)
    np.testing.assert_allclose(truth["p_order_rel"] * truth["p_click"],
                               truth["p_order"] * truth["p_click_rel"], rtol=0, atol=1e-15)


def _labelled(logs):
    """Impressions with the ingest's labels: click by request_id, cart/order within 24 h."""
    imp = logs["impressions"].merge(logs["truth"], on="impression_id")
    rec = logs["clicks"].dropna(subset=["request_id"])
    keys = ["request_id", "user_id", "item_id"]
    clicked = imp.merge(rec.rename(columns={"ts": "click_ts"}), on=keys)
    imp["click"] = imp["impression_id"].isin(clicked["impression_id"])
    for log in ("carts", "orders"):
        joined = clicked[["impression_id", "user_id", "item_id", "click_ts"]].merge(
            logs[log], on=["user_id", "item_id"])
        inside = (joined["ts"] >= joined["click_ts"]) & (joined["ts"] <= joined["click_ts"] + DAY)
        imp[log] = imp["impression_id"].isin(joined.loc[inside, "impression_id"])
    return imp, clicked


def test_empirical_rates_match_truth(moderate):
    _, _, logs = moderate
    imp, _ = _labelled(logs)
    for label, prob in (("click", "p_click"), ("carts", "p_cart"), ("orders", "p_order")):
        p = imp[prob].to_numpy()
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(imp[label].sum() - p.sum()) < 4 * sd + 1, label
    ctr = imp.groupby("position")["click"].mean()
    assert ctr.loc[1:3].mean() > 2 * ctr.loc[11:].mean()
    assert ctr.loc[1] > ctr.loc[5] > ctr.loc[20]


def test_labelled_events_are_consistent(moderate):
    _, s, logs = moderate
    imp, clicked = _labelled(logs)
    rec = logs["clicks"].dropna(subset=["request_id"])
    assert len(clicked) == len(rec) == s["recommended_clicks"]  # every click has its impression
    delay = clicked["click_ts"] - clicked["ts"]
    assert (delay >= 0).all() and (delay < 600).all()
    assert logs["clicks"]["request_id"].isna().sum() == s["organic_clicks"] > 0
    # The labels the ingest derives are exactly the events the simulator drew.
    assert imp["carts"].sum() == round(s["cart_rate"] * s["impressions"])
    assert imp["orders"].sum() == round(s["order_rate"] * s["impressions"])


def test_scenarios_differ(moderate):
    _, s, logs = moderate
    per = s["scenarios"]
    assert set(per) == {"NL", "DE", "FR", "PL"} and set(logs["impressions"]["scenario"]) == set(per)
    assert all(v["impressions"] > 1000 for v in per.values())
    assert per["NL"]["ctr"] > per["PL"]["ctr"] * 1.3
    assert per["NL"]["cvr"] > per["PL"]["cvr"]


def test_scenarios_differ_in_taste(moderate):
    """The clicks of each scenario are explained best by its own taste: swapping in another
    scenario's taste (same level offset, same examination) lowers the clicks' log-likelihood."""
    from simulation.simulator import _Simulator

    _, s, logs = moderate
    world = _Simulator(SimulationConfig(users=1000, days=4, seed=3)).w
    imp, _ = _labelled(logs)
    names = {n: k for k, n in enumerate(s["scenarios"])}
    users = logs["users"].set_index("user_id")["scenario"]
    assert (imp["user_id"].map(users) == imp["scenario"]).all()
    scenario = imp["scenario"].map(names).to_numpy()
    item = imp["item_id"].str[1:].astype(int).to_numpy()
    click = imp["click"].to_numpy()
    rel = imp["p_click_rel"].to_numpy()
    exam = imp["p_click"].to_numpy() / rel
    logit = np.log(rel) - np.log1p(-rel)
    taste = world.scenario_click_taste
    for k in range(len(names)):
        m = scenario == k
        loglik = []
        for t in range(len(names)):
            p = exam[m] / (1.0 + np.exp(-(logit[m] - taste[k, item[m]] + taste[t, item[m]])))
            loglik.append(np.where(click[m], np.log(p), np.log1p(-p)).sum())
        others = max(v for t, v in enumerate(loglik) if t != k)
        assert loglik[k] > others + 10, (k, loglik)
    # The per-category click rates rank categories differently across scenarios.
    cat = imp.merge(logs["items"][["item_id", "category_id"]], on="item_id")
    top = {}
    for name, group in cat.groupby("scenario"):
        rate = group.groupby("category_id")["click"].agg(["mean", "size"])
        top[name] = set(rate[rate["size"] >= 300]["mean"].nlargest(5).index)
    assert len(set.intersection(*top.values())) < 5


def test_world_taste_differs_by_scenario_and_enters_the_logits(world_sim):
    sim = world_sim
    w, c = sim.w, sim.c
    n = len(c.scenarios)
    assert w.scenario_category_taste.shape == (n, c.n_categories)
    assert w.scenario_click_taste.shape == w.scenario_order_taste.shape == (n, c.n_items)
    lo, hi = c.scenario_taste_range
    assert ((w.scenario_taste_strength >= lo) & (w.scenario_taste_strength <= hi)).all()
    assert len(set(np.round(w.scenario_price_slope, 6))) == n
    for a in range(n):
        for b in range(a + 1, n):
            # Different tastes: the scenarios' best-liked categories are not in the same order.
            corr = np.corrcoef(w.scenario_category_taste[a], w.scenario_category_taste[b])[0, 1]
            assert corr < 0.9
            ranks = np.argsort(-w.scenario_click_taste[a]), np.argsort(-w.scenario_click_taste[b])
            assert not np.array_equal(ranks[0][:20], ranks[1][:20])
    # The taste is the one documented: strength * (category taste + price slope * price tier),
    # re-centred by a constant per scenario.
    raw = w.scenario_taste_strength[:, None] * (
        w.scenario_category_taste[:, w.item_category]
        + w.scenario_price_slope[:, None] * w.item_price_tier)
    shift = w.scenario_click_taste - raw
    np.testing.assert_allclose(shift, shift[:, :1].repeat(c.n_items, axis=1), atol=1e-9)
    shift = w.scenario_order_taste - c.taste_order_share * raw
    np.testing.assert_allclose(shift, shift[:, :1].repeat(c.n_items, axis=1), atol=1e-9)
    # Moving a user to another scenario moves the click and order logits by exactly the
    # scenario's level offset plus its taste for each item.
    u, st, items = 0, _fresh_state(sim), np.arange(0, c.n_items, 7)
    home = int(w.user_scenario[u])
    base = sim._terms(u, st, items, sim.start)
    try:
        for other in range(n):
            w.user_scenario[u] = other
            moved = sim._terms(u, st, items, sim.start)
            np.testing.assert_allclose(
                moved[0] - base[0],
                c.scenario_click_offsets[other] - c.scenario_click_offsets[home]
                + w.scenario_click_taste[other, items] - w.scenario_click_taste[home, items],
                atol=1e-9)
            np.testing.assert_allclose(
                moved[3] - base[3],
                c.scenario_order_offsets[other] - c.scenario_order_offsets[home]
                + w.scenario_order_taste[other, items] - w.scenario_order_taste[home, items],
                atol=1e-9)
            np.testing.assert_array_equal(moved[1], base[1])  # cart and wish are taste-free
    finally:
        w.user_scenario[u] = home


def test_taste_scale_zero_switches_taste_off():
    from simulation.world import build_world

    config = SimulationConfig(users=20, days=1, seed=4, scenario_taste_scale=0.0)
    w = build_world(config, np.random.default_rng(config.seed))
    assert not w.scenario_click_taste.any() and not w.scenario_order_taste.any()


def test_build_world_is_deterministic():
    from simulation.world import build_world

    config = SimulationConfig(users=30, days=1, seed=6)
    a = build_world(config, np.random.default_rng(6))
    b = build_world(config, np.random.default_rng(6))
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_truth_is_the_behaviour_model_including_taste(moderate):
    """For each user's first request (before any click or order of theirs, so the user state is
    fresh), p_click_rel and p_order_rel are exactly the behaviour model's, taste included."""
    from simulation.simulator import _Simulator
    from simulation.world import order_given_click, post_click, sigmoid

    _, _, logs = moderate
    sim = _Simulator(SimulationConfig(users=1000, days=4, seed=3))
    imp = logs["impressions"].merge(logs["truth"], on="impression_id")
    request = imp["request_id"].str[1:].astype(int)
    first = imp[request == request.groupby(imp["user_id"]).transform("min")]
    events = pd.concat([logs[log][["user_id", "ts"]] for log in ("clicks", "orders")])
    first_event = events.groupby("user_id")["ts"].min()
    start = first.groupby("user_id")["ts"].min()
    fresh = start[start < first_event.reindex(start.index).fillna(np.inf)].index
    assert len(fresh) > 300
    checked = 0
    for user_id, group in first[first["user_id"].isin(fresh)].groupby("user_id"):
        u = int(user_id[1:])
        items = group["item_id"].str[1:].astype(int).to_numpy()
        click, cart, wish, order = sim._terms(u, _fresh_state(sim), items, int(group["ts"].min()))
        p_rel = sigmoid(click)
        # Exact up to the 15 decimals the truth is written with.
        np.testing.assert_allclose(group["p_click_rel"], p_rel, rtol=0, atol=1e-15)
        p_order = order_given_click(*post_click(cart, wish, order, sim.c))
        np.testing.assert_allclose(group["p_order_rel"], p_rel * p_order, rtol=0, atol=1e-15)
        checked += len(group)
    assert checked > 5000


def test_cart_and_wish_raise_the_purchase_probability(moderate):
    from simulation.world import order_given_click, post_click

    config = SimulationConfig()
    assert config.order_after_daction > config.order_without_daction
    logit = np.linspace(-8.0, 2.0, 41)
    pc, pw, pd, po = post_click(logit - 1.0, logit - 1.5, logit, config)
    assert (pd > po).all()
    given = order_given_click(pc, pw, pd, po)
    assert ((given > po) & (given < pd)).all()
    # More DAction -> more orders, for a fixed order logit.
    more = order_given_click(np.minimum(pc * 2, 1.0), pw, pd, po)
    assert (more > given).all()
    # In the logs: recommended clicks followed by a cart or wish are ordered far more often.
    _, _, logs = moderate
    _, clicked = _labelled(logs)
    clicked = clicked[["impression_id", "user_id", "item_id", "click_ts"]]
    flags = {}
    for log in ("carts", "wishes", "orders"):
        joined = clicked.merge(logs[log], on=["user_id", "item_id"])
        inside = (joined["ts"] >= joined["click_ts"]) & (joined["ts"] <= joined["click_ts"] + DAY)
        flags[log] = clicked["impression_id"].isin(joined.loc[inside, "impression_id"])
    daction = flags["carts"] | flags["wishes"]
    assert daction.sum() > 100
    after_daction, without = flags["orders"][daction].mean(), flags["orders"][~daction].mean()
    assert after_daction > 3 * without, (after_daction, without)


def test_parquet_output_matches_jsonl(small, tmp_path):
    out, _ = small
    pout = str(tmp_path / "parquet")
    simulate(pout, SimulationConfig(seed=7, format="parquet", **SMALL))
    for log in LOGS:
        paths = _files(pout, log)
        assert paths and all(p.endswith(".parquet") for p in paths), log
        jsonl, parquet = _load(out, log), _load(pout, log)
        assert len(jsonl) == len(parquet), log
    imp = _load(pout, "impressions")
    assert imp["ts"].dtype == np.int64 and imp["position"].dtype == np.int64
    assert pq.read_table(_files(pout, "clicks")[0]).schema.field("request_id").type == "string"
    assert (_load(pout, "clicks")["request_id"].isna()).any()


def test_cli_runs(tmp_path, capsys):
    parser = cli.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path / "logs"), "--users", "30", "--days", "2",
                              "--seed", "1", "--items", "800", "--start-date", "2026-01-05"])
    assert cli.run(args) == 0
    assert "impressions" in capsys.readouterr().out
    with open(tmp_path / "logs" / "simulation_summary.json") as f:
        summary = json.load(f)
    assert summary["days"] == 2 and summary["counts"]["items"] == 800
    assert os.path.exists(tmp_path / "logs" / "impressions" / "2026-01-05.jsonl.gz")
    with pytest.raises(SystemExit):
        parser.parse_args(["--users", "3"])  # --out is required


def test_parquet_is_deterministic(tmp_path):
    config = SimulationConfig(users=40, days=2, seed=5, format="parquet")
    simulate(str(tmp_path / "a"), config)
    simulate(str(tmp_path / "b"), config)
    assert _all_bytes(str(tmp_path / "a")) == _all_bytes(str(tmp_path / "b"))


def test_output_does_not_depend_on_hash_randomisation(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from simulation import simulate, SimulationConfig; "
            "simulate(sys.argv[1], SimulationConfig(users=40, days=2, seed=2))")
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=os.path.abspath(root))
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, env=env)
    assert _all_bytes(str(tmp_path / "a")) == _all_bytes(str(tmp_path / "b"))


def test_ingest_contract_checker_accepts_the_logs(small):
    contract = pytest.importorskip("components.ingest.contract")
    if not hasattr(contract, "list_log_files"):
        pytest.skip("the ingest contract checker has no list_log_files")
    files = contract.list_log_files(small[0])
    assert {f.log for f in files} == set(contract.INGESTED_LOGS)


# --- the world's mechanisms, on the behaviour model directly ----------------------------------


@pytest.fixture(scope="module")
def world_sim():
    from simulation.simulator import _Simulator

    return _Simulator(SimulationConfig(users=50, days=2, seed=11))


def _fresh_state(sim):
    from simulation.simulator import _UserState

    return _UserState(sim.c.dim, sim.c.n_categories)


def _category_items(sim, category):
    w = sim.w
    return w.items_by_category[w.category_start[category]:w.category_start[category + 1]]


def test_recent_clicks_raise_relevance_of_similar_items(world_sim):
    sim, u = world_sim, 0
    st = _fresh_state(sim)
    other = [c for c in range(sim.c.n_categories) if c not in sim.w.user_categories[u]][0]
    items = _category_items(sim, other)
    before = sim._terms(u, st, items, sim.start)[0]
    for k, item in enumerate(items[:3]):
        sim._apply_click(st, int(item), sim.start + k)
    after = sim._terms(u, st, items, sim.start + 10)[0]
    assert (after - before).mean() > 0.3


def test_carts_and_repurchase_types_shift_order_probability(world_sim):
    from simulation.world import CONSUMABLE, DURABLE

    sim, u = world_sim, 1
    w, now = sim.w, sim.start
    for kind in (DURABLE, CONSUMABLE):
        category = int(np.flatnonzero(w.category_type == kind)[0])
        items = _category_items(sim, category)
        st = _fresh_state(sim)
        base = sim._terms(u, st, items, now)
        sim._order(u, st, int(items[0]), now)
        soon = sim._terms(u, st, items, now + DAY)
        np.testing.assert_allclose(soon[0][1:], base[0][1:])  # clicks are unaffected
        assert (soon[3] < base[3]).all()  # just bought: fewer orders in the category
        if kind == CONSUMABLE:  # after its period, the same item is reordered first
            later = sim._terms(u, st, items, now + int(w.category_period[category]) + DAY)
            gain = later[3] - base[3]
            assert (gain > 0).all() and gain[0] > gain[1:].max()
        else:
            assert (base[3] - soon[3]).min() > 3.0
    st = _fresh_state(sim)
    item = np.array([int(_category_items(sim, 0)[0])])
    base = sim._terms(u, st, item, now)[3]
    st.cart[int(item[0])] = now
    assert sim._terms(u, st, item, now + 60)[3] > base + 1.0
