"""The log simulator: plays users through the world of `simulation.world` and writes raw logs.

Scale. Users have Poisson(activity) sessions per day (activity ~ Gamma with mean
`sessions_per_day` = 0.4), each of 1-3 requests, each showing 10 + Exp(10) items (at most 40,
~19 on average, pages 1-4). That is ~15 impressions per user-day, linear in users x days:
users=2000, days=14 gives ~0.43M impressions (427,365 for seed 0). Organic (non-recommended)
clicks come at `organic_per_session` x activity per day (~30 % of recommended clicks).

One request: the logging policy recalls `n_candidates` items (the user's preferred and recently
clicked categories, popular items, carted items and consumables due for reorder), scores them
with the true relevance logit plus N(0, policy_noise) error and shows the top n by that score,
so position is confounded with relevance (the selection bias DMT: Deep Multifaceted
Transformers for Multi-objective Ranking in Large-Scale E-commerce Recommender Systems models).
Clicks are drawn with p_click = examination(position, page) x neighbour factor x p_click_rel,
where the relevance logit holds the user's scenario's level and taste (per-category and
price-tier preferences, `World.scenario_click_taste`); after a click, cart and wish (ESM2's
DAction) and an order within 24 h are drawn from the ESM2 graph (ESM2: Entire Space
Multi-Task Modeling via Post-Click Behavior Decomposition for Conversion Rate Prediction).
The truth log holds exactly those probabilities (see simulation/README.md).

User state evolves in time order: a short-term interest (decaying average of clicked item
embeddings) shifts relevance; carted items get a raised order probability when clicked again
and some are ordered organically 26 h - 5 days later; orders update per-category repurchase
state (durable: orders suppressed for months; consumable: reorders of the same item due after
a category period, some of them organic).

Labels stay exact: an item the user clicked in the last 24 h is not recommended again and
organic carts/orders never fall within 24 h after a recommended click on the same item, so
every cart/order the ingest attributes to an impression was drawn from that impression's truth.
"""

import dataclasses
import glob
import gzip
import heapq
import json
import os
import time
from typing import Dict, List

import numpy as np
import pandas as pd

from simulation.world import (AGE_BANDS, CONSUMABLE, DAY, DURABLE, SimulationConfig,
                              build_world, display_factor, order_given_click,
                              post_click, sigmoid)

CONFIG_FILE = "simulation_config.json"  # the SimulationConfig, beside the logs
LOGS = ("items", "impressions", "clicks", "carts", "wishes", "orders", "users", "truth")
# Relative session frequency by UTC hour (Europe: quiet nights, lunch and evening peaks).
_HOUR_WEIGHTS = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 4, 4, 3, 3, 3, 3, 4, 5, 6, 6, 4, 2.0])
_HOUR_SPAN = np.where(np.arange(24) == 23, 1200, 3600)  # start by 23:20 so sessions end in-day
_LAST_START = 23 * 3600 + 1200
_CART, _WISH, _REORDER = 0, 1, 2  # kinds of pending organic orders


class _UserState:
    """What the user has done so far; read by the behaviour model at each request."""

    __slots__ = ("short_term", "short_ts", "clicked", "recent_categories", "cart", "wish",
                 "order_ts", "order_item", "pending", "seq")

    def __init__(self, dim: int, n_categories: int):
        self.short_term = np.zeros(dim)
        self.short_ts = 0
        self.clicked: Dict[int, int] = {}  # item -> ts of its last click
        self.recent_categories: List[int] = []  # categories of the last 5 clicks
        self.cart: Dict[int, int] = {}  # item -> cart ts, until ordered
        self.wish: Dict[int, int] = {}
        self.order_ts = np.full(n_categories, -1e18)  # last order per category
        self.order_item = np.full(n_categories, -1)
        self.pending: list = []  # heap of (due ts, seq, kind, item) organic orders
        self.seq = 0


class _Simulator:
    def __init__(self, config: SimulationConfig):
        self.c = config
        self.rng = np.random.default_rng(config.seed)
        self.w = build_world(config, self.rng)
        self.start, self.end = config.start_ts, config.end_ts
        self.hour_p = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
        self.imp = {k: [] for k in ("request", "user", "item", "ts", "position", "p_click",
                                    "p_rel", "p_cart", "p_order", "p_order_rel", "outcome")}
        self.n_requests = 0
        self.clicks: list = []  # (user, item, ts, request or -1)
        self.carts: list = []
        self.wishes: list = []
        self.orders: list = []  # (user, item, ts, amount)

    # --- behaviour model -----------------------------------------------------------------

    def _terms(self, u: int, st: _UserState, items: np.ndarray, now: int):
        """Logits of click relevance, cart, wish and order (given click) for `items`."""
        c, w = self.c, self.w
        fade = 0.5 ** ((now - st.short_ts) / (c.short_term_half_life_days * DAY))
        interest = w.user_preference[u] + c.short_term_weight * fade * st.short_term
        aff = c.affinity_scale * (w.item_embedding[items] @ interest)
        q = w.item_quality[items]
        cat = w.item_category[items]
        # Repurchase (DMT 6.2.1): after an order, durables are not bought again for months;
        # consumables are stocked until their period passes, then reordered (same item first).
        elapsed = now - st.order_ts[cat]
        ordered = (st.order_ts[cat] > -1e17) & (elapsed >= 0)
        recent = ordered & (elapsed < w.category_period[cat])
        durable = w.category_type[cat] == DURABLE
        due = ordered & ~recent & ~durable
        same = due & (st.order_item[cat] == items)
        repurchase = np.where(durable, c.durable_order_penalty * recent,
                              c.consumable_early_penalty * recent + c.consumable_due_boost * due)
        s = w.user_scenario[u]
        click = (c.click_bias + c.scenario_click_offsets[s] + w.scenario_click_taste[s, items]
                 + aff + 0.3 * q + c.same_item_click_boost * same)
        price = np.clip(np.log(w.item_price[items] / w.user_purchase_power[u]), -2.0, 4.0)
        carted = [i for i, t in st.cart.items() if t <= now]
        in_cart = np.isin(items, carted) if carted else np.zeros(items.size, bool)
        order = (c.order_bias + c.scenario_order_offsets[s] + w.scenario_order_taste[s, items]
                 + 0.5 * aff + 0.4 * q
                 - c.price_weight * price + c.cart_item_boost * in_cart + repurchase
                 + c.same_item_order_boost * same)
        cart = c.cart_bias + 0.5 * aff + 0.3 * q - 0.2 * price
        wish = c.wish_bias + 0.4 * aff + 0.2 * q + 0.3 * price  # dear items wait for a discount
        return click, cart, wish, order

    # --- logging policy ------------------------------------------------------------------

    def _candidates(self, u: int, st: _UserState, now: int, k: int) -> np.ndarray:
        """Recall: preferred and recent categories, popular items, cart and due reorders."""
        w, rng = self.w, self.rng
        k_pop = k * 3 // 10
        k_cat = k - k_pop
        cats = w.user_categories[u][rng.integers(0, 3, k_cat)]
        if st.recent_categories:
            k_recent = k_cat // 3
            recent = np.asarray(st.recent_categories)
            cats[:k_recent] = recent[rng.integers(0, recent.size, k_recent)]
        lo = w.category_start[cats]
        size = w.category_start[cats + 1] - lo
        by_cat = w.items_by_category[lo + (rng.random(k_cat) * size).astype(np.int64)]
        popular = np.searchsorted(w.item_popularity, rng.random(k_pop) * w.item_popularity[-1])
        due = ((st.order_item >= 0) & (w.category_type == CONSUMABLE)
               & (now - st.order_ts >= w.category_period))
        extra = [np.fromiter(st.cart, np.int64, len(st.cart)), st.order_item[due]]
        cands = np.unique(np.concatenate([by_cat, popular, *extra]))
        # Items clicked in the last 24 h are not shown again (keeps 24 h labels unambiguous).
        recent_clicks = [i for i, t in st.clicked.items() if t >= now - DAY]
        if recent_clicks:
            cands = cands[~np.isin(cands, recent_clicks)]
        return cands

    def _shown(self) -> int:
        c = self.c
        n = c.min_shown + int(self.rng.exponential(c.shown_extra_mean))
        return min(n, c.max_shown)

    # --- one request ---------------------------------------------------------------------

    def _request(self, u: int, st: _UserState, now: int) -> int:
        """Shows a list, draws clicks and post-click events; returns the request's last ts."""
        c, w, rng = self.c, self.w, self.rng
        cands = self._candidates(u, st, now, c.n_candidates)
        if cands.size == 0:
            return now
        click_l, cart_l, wish_l, order_l = self._terms(u, st, cands, now)
        score = click_l + rng.normal(0.0, c.policy_noise, cands.size)
        top = np.argsort(-score, kind="stable")[: min(self._shown(), cands.size)]
        items, n = cands[top], top.size
        position = np.arange(1, n + 1)
        p_rel = sigmoid(click_l[top])
        p_click = display_factor(w.item_category[items], c) * p_rel
        pc, pw, pd, po = post_click(cart_l[top], wish_l[top], order_l[top], c)
        p_order_click = order_given_click(pc, pw, pd, po)
        draws = rng.random((4, n))
        clicked = draws[0] < p_click
        cart = clicked & (draws[1] < pc)
        wish = clicked & (draws[2] < pw)
        order = clicked & (draws[3] < np.where(cart | wish, pd, po))
        page = (position - 1) // c.page_size + 1
        imp_ts = now + (page - 1) * int(rng.integers(5, 40))
        request = self.n_requests
        self.n_requests += 1
        for key, value in (("request", np.full(n, request)), ("user", np.full(n, u)),
                           ("item", items), ("ts", imp_ts), ("position", position),
                           ("p_click", p_click), ("p_rel", p_rel), ("p_cart", p_click * pc),
                           ("p_order", p_click * p_order_click),
                           ("p_order_rel", p_rel * p_order_click),
                           ("outcome", clicked + 2 * cart + 4 * wish + 8 * order)):
            self.imp[key].append(value)
        last = int(imp_ts[-1])
        hits = np.flatnonzero(clicked)
        if hits.size:
            click_ts = imp_ts[hits] + rng.integers(3, 120, hits.size)
            for j in np.argsort(click_ts, kind="stable"):
                i = hits[j]
                last = max(last, self._click(u, st, int(items[i]), int(click_ts[j]), request,
                                             cart[i], wish[i], order[i]))
        return last

    def _click(self, u, st, item, ts, request, cart, wish, order) -> int:
        """Logs a click and the post-click events drawn for it; returns the last in-session ts."""
        rng = self.rng
        self.clicks.append((u, item, ts, request))
        self._apply_click(st, item, ts)
        last = ts
        cart_ts = ts + int(rng.integers(10, 300))
        if cart:
            self.carts.append((u, item, cart_ts))
            st.cart[item] = cart_ts
            last = cart_ts
        if wish:
            wish_ts = ts + int(rng.integers(10, 300))
            self.wishes.append((u, item, wish_ts))
            st.wish[item] = wish_ts
            last = max(last, wish_ts)
        if order:
            # Most orders follow within the hour, some hours later; always within 24 h.
            late = rng.random() >= 0.85
            delay = int(rng.integers(3600, 72000) if late else rng.integers(60, 3600))
            order_ts = (cart_ts if cart else ts) + delay
            self._order(u, st, item, max(ts + 1, min(order_ts, ts + DAY - 60, self.end - 1)))
        else:
            if cart and rng.random() < self.c.cart_organic_order_prob:
                self._schedule(st, ts + int(rng.integers(26 * 3600, 5 * DAY)), _CART, item)
            if wish and rng.random() < self.c.wish_organic_order_prob:
                self._schedule(st, ts + int(rng.integers(26 * 3600, 5 * DAY)), _WISH, item)
        return last

    def _apply_click(self, st: _UserState, item: int, ts: int):
        """Short-term interest: exponentially decaying average of clicked item embeddings."""
        c = self.c
        fade = 0.5 ** ((ts - st.short_ts) / (c.short_term_half_life_days * DAY))
        st.short_term = (c.short_term_decay * fade * st.short_term
                         + (1.0 - c.short_term_decay) * self.w.item_embedding[item])
        st.short_ts = ts
        st.clicked[item] = ts
        st.recent_categories = st.recent_categories[-4:] + [int(self.w.item_category[item])]

    def _order(self, u: int, st: _UserState, item: int, ts: int):
        w, rng = self.w, self.rng
        cat = w.item_category[item]
        quantity = 1 if w.category_type[cat] == DURABLE else int(rng.integers(1, 4))
        self.orders.append((u, item, ts, round(float(w.item_price[item]) * quantity, 2)))
        if ts >= st.order_ts[cat]:
            st.order_ts[cat], st.order_item[cat] = ts, item
        st.cart.pop(item, None)
        st.wish.pop(item, None)
        if w.category_type[cat] == CONSUMABLE and rng.random() < self.c.consumable_reorder_prob:
            period = w.category_period[cat] * rng.lognormal(0.0, 0.25)
            self._schedule(st, ts + int(period), _REORDER, item)

    def _schedule(self, st: _UserState, due: int, kind: int, item: int):
        if due < self.end:
            heapq.heappush(st.pending, (due, st.seq, kind, item))
            st.seq += 1

    def _flush(self, u: int, st: _UserState, until: int):
        """Emits pending organic orders due by `until`, unless clicked in the 24 h before."""
        while st.pending and st.pending[0][0] <= until:
            due, _, kind, item = heapq.heappop(st.pending)
            if st.clicked.get(item, -2 * DAY) >= due - DAY:  # the ingest's window is inclusive
                continue
            if (kind == _CART and item not in st.cart) or (kind == _WISH and item not in st.wish):
                continue  # already ordered
            self._order(u, st, item, due)

    # --- organic traffic and the day loop -------------------------------------------------

    def _organic(self, u: int, st: _UserState, now: int) -> int:
        """A click outside recommendations (search, direct), maybe with cart/wish/order."""
        rng = self.rng
        cands = self._candidates(u, st, now, 60)
        if cands.size == 0:
            return now
        click_l, cart_l, wish_l, order_l = self._terms(u, st, cands, now)
        weight = np.cumsum(np.exp(click_l - click_l.max()))
        i = min(int(np.searchsorted(weight, rng.random() * weight[-1])), cands.size - 1)
        pc, pw, pd, po = post_click(cart_l[i], wish_l[i], order_l[i], self.c)
        cart, wish = rng.random() < pc, rng.random() < pw
        order = rng.random() < (pd if cart or wish else po)
        return self._click(u, st, int(cands[i]), now, -1, cart, wish, order)

    def _session(self, u: int, st: _UserState, now: int) -> int:
        t = now
        for _ in range(int(self.rng.integers(1, self.c.max_requests_per_session + 1))):
            t = self._request(u, st, t) + int(self.rng.integers(20, 240))
        return t

    def run_user(self, u: int):
        c, rng = self.c, self.rng
        st = _UserState(c.dim, c.n_categories)
        cursor = self.start
        for d in range(c.days):
            day0 = self.start + d * DAY
            n_sessions = rng.poisson(self.w.user_activity[u])
            n_organic = rng.poisson(self.w.user_activity[u] * c.organic_per_session)
            hours = rng.choice(24, size=n_sessions + n_organic, p=self.hour_p)
            times = day0 + hours * 3600 + (rng.random(hours.size) * _HOUR_SPAN[hours]).astype(int)
            is_session = np.arange(hours.size) < n_sessions
            # Flush before forgetting old clicks: the 24 h guard of a due order needs them.
            self._flush(u, st, day0)
            st.clicked = {i: t for i, t in st.clicked.items() if t > day0 - 3 * DAY}
            for j in np.argsort(times, kind="stable"):
                t = max(int(times[j]), cursor)  # the user's actions never overlap in time
                if t > day0 + _LAST_START:
                    continue
                self._flush(u, st, t)
                cursor = (self._session if is_session[j] else self._organic)(u, st, t) + 30
        self._flush(u, st, self.end - 1)


# --- output --------------------------------------------------------------------------------


def _ids(prefix: str, values) -> pd.Series:
    return prefix + pd.Series(np.asarray(values)).astype(str)


def _write_table(df: pd.DataFrame, path_stem: str, fmt: str, precision: int = 10):
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path_stem + ".parquet")
        return
    text = df.to_json(orient="records", lines=True, double_precision=precision)
    if not text.endswith("\n"):
        text += "\n"
    with open(path_stem + ".jsonl.gz", "wb") as f:  # mtime=0: byte-identical reruns
        f.write(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))


def _write_log(out_dir: str, log: str, df: pd.DataFrame, config: SimulationConfig,
               precision: int = 10, by_day: bool = True):
    """Writes one log, one file per UTC day of `ts` (or one file named after the log)."""
    log_dir = os.path.join(out_dir, log)
    os.makedirs(log_dir, exist_ok=True)
    # files of an earlier run would mix into this one
    for path in sorted(glob.glob(os.path.join(log_dir, "*")) + glob.glob(os.path.join(log_dir, "dt=*", "*"))):
        if path.endswith((".jsonl", ".jsonl.gz", ".parquet")):
            os.remove(path)
    if not by_day:
        _write_table(df, os.path.join(log_dir, log), config.format, precision)
        return
    day = (df["ts"].to_numpy() - config.start_ts) // DAY
    dates = pd.date_range(config.start_date, periods=config.days, freq="D").strftime("%Y-%m-%d")
    for d in np.unique(day):
        part = df[day == d].reset_index(drop=True)
        if log == "truth":
            part = part.drop(columns="ts")
        if config.partition_by_day:
            os.makedirs(os.path.join(log_dir, f"dt={dates[d]}"), exist_ok=True)
            _write_table(part, os.path.join(log_dir, f"dt={dates[d]}", "part-0"), config.format, precision)
        else:
            _write_table(part, os.path.join(log_dir, dates[d]), config.format, precision)


def _impressions(sim: _Simulator) -> Dict[str, np.ndarray]:
    """The impression buffers as arrays in ts order (stable, so deterministic)."""
    imp = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in sim.imp.items()}
    order = np.argsort(imp["ts"], kind="stable")
    return {k: v[order] for k, v in imp.items()}


def _frames(sim: _Simulator, imp: Dict[str, np.ndarray]) -> Dict[str, pd.DataFrame]:
    """The logs as data frames; impression ids follow ts order, events are sorted by ts."""
    c, w = sim.c, sim.w
    impression_id = _ids("imp", np.arange(imp["ts"].size))
    frames = {
        "items": pd.DataFrame({
            "item_id": _ids("i", np.arange(c.n_items)),
            "category_id": _ids("c", w.item_category), "brand_id": _ids("b", w.item_brand),
            "shop_id": _ids("s", w.item_shop), "price": w.item_price}),
        "users": pd.DataFrame({
            "user_id": _ids("u", np.arange(c.users)),
            "scenario": np.asarray(c.scenarios)[w.user_scenario],
            "age_band": np.asarray(AGE_BANDS)[w.user_age_band],
            "purchase_power": w.user_purchase_power}),
        "impressions": pd.DataFrame({
            "impression_id": impression_id, "request_id": _ids("r", imp["request"]),
            "user_id": _ids("u", imp["user"]), "item_id": _ids("i", imp["item"]),
            "ts": imp["ts"].astype(np.int64), "position": imp["position"].astype(np.int64),
            "page": ((imp["position"] - 1) // c.page_size + 1).astype(np.int64),
            "scenario": np.asarray(c.scenarios)[w.user_scenario[imp["user"]]]}),
        "truth": pd.DataFrame({
            "impression_id": impression_id, "p_click": imp["p_click"],
            "p_click_rel": imp["p_rel"], "p_cart": imp["p_cart"], "p_order": imp["p_order"],
            "p_order_rel": imp["p_order_rel"],
            "ts": imp["ts"].astype(np.int64)}),  # only to split by day; dropped on writing
    }
    for log, rows, extra in (("clicks", sim.clicks, ["request"]), ("carts", sim.carts, []),
                             ("wishes", sim.wishes, []), ("orders", sim.orders, ["amount"])):
        raw = pd.DataFrame(rows, columns=["user", "item", "ts"] + extra)
        raw = raw.iloc[np.argsort(raw["ts"].to_numpy(), kind="stable")].reset_index(drop=True)
        df = pd.DataFrame({"user_id": _ids("u", raw["user"]), "item_id": _ids("i", raw["item"]),
                           "ts": raw["ts"].to_numpy(np.int64)})
        if log == "clicks":
            rid = _ids("r", raw["request"]).astype(object)
            rid[raw["request"].to_numpy() < 0] = None  # organic: no request_id
            df["request_id"] = rid
        if log == "orders":
            df["order_id"] = _ids("o", np.arange(len(raw)))
            df["amount"] = raw["amount"].to_numpy(float)
        frames[log] = df
    return frames


def _rate(num, den) -> float:
    return float(num) / float(den) if den else 0.0


def _summary(sim: _Simulator, imp: Dict[str, np.ndarray], frames, seconds: float) -> dict:
    c, w = sim.c, sim.w
    n = imp["item"].size
    outcome = imp["outcome"].astype(np.int64)
    click, cart, wish, order = ((outcome >> b) & 1 for b in range(4))
    scen = w.user_scenario[imp["user"]] if n else np.zeros(0, int)
    per_scenario = {}
    for s, name in enumerate(c.scenarios):
        m = scen == s
        per_scenario[name] = {
            "impressions": int(m.sum()), "ctr": _rate(click[m].sum(), m.sum()),
            "cvr": _rate(order[m].sum(), click[m].sum()),
            "order_rate": _rate(order[m].sum(), m.sum())}
    rec_clicks = int(click.sum())
    return {
        "seed": c.seed, "users": c.users, "days": c.days, "start_date": c.start_date,
        "format": c.format, "counts": {log: int(len(df)) for log, df in frames.items()},
        "impressions": n, "requests": sim.n_requests,
        "impressions_per_request": _rate(n, sim.n_requests),
        "recommended_clicks": rec_clicks,
        "organic_clicks": len(sim.clicks) - rec_clicks,
        "ctr": _rate(rec_clicks, n), "cart_rate": _rate(cart.sum(), n),
        "wish_rate": _rate(wish.sum(), n), "order_rate": _rate(order.sum(), n),
        "cvr": _rate(order.sum(), rec_clicks),
        "organic_orders": len(sim.orders) - int(order.sum()),
        "mean_p_click": float(imp["p_click"].mean()) if n else 0.0,
        "mean_p_order": float(imp["p_order"].mean()) if n else 0.0,
        "scenarios": per_scenario,
        "wall_seconds": round(seconds, 3),
        "impressions_per_minute": round(_rate(n * 60.0, seconds)),
    }


def simulate(out_dir: str, config: SimulationConfig = None) -> dict:
    """Simulates `config` (default: SimulationConfig()) and writes the logs under `out_dir`.

    Returns the summary also written to `out_dir/simulation_summary.json`.
    """
    config = config or SimulationConfig()
    # before the minutes of simulation: a path that cannot be a directory fails now
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    sim = _Simulator(config)
    for u in range(config.users):
        sim.run_user(u)
    imp = _impressions(sim)
    frames = _frames(sim, imp)
    for log, df in frames.items():
        if log in ("items", "users"):
            _write_log(out_dir, log, df, config, by_day=False)
        elif log == "truth":  # probabilities at full precision: the truth is exact
            _write_log(out_dir, log, df, config, precision=15)
        else:
            _write_log(out_dir, log, df, config)
    summary = _summary(sim, imp, frames, time.perf_counter() - started)
    with open(os.path.join(out_dir, "simulation_summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    # The behaviour constants, so that a replay (`funnel abtest`) applies the world's own model.
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2, sort_keys=True)
    return summary


def read_config(logs_dir: str) -> SimulationConfig:
    """The SimulationConfig a simulated logs directory was written with (tf.io.gfile paths)."""
    from tensorflow.io import gfile

    with gfile.GFile(os.path.join(logs_dir, CONFIG_FILE)) as f:
        fields = json.load(f)
    return SimulationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
