"""The simulated e-commerce world: its configuration, its latent state and its behaviour model.

Everything latent (item categories, brands, shops, prices, price tiers, qualities and
embeddings; users' long-term preferences, scenario, purchase power and activity; category
repurchase types; each scenario's taste) is drawn from `SimulationConfig.seed` by
`build_world`. The functions at the bottom are the behaviour model the simulator draws events
from, kept pure so the truth log is exactly the probability used (simulation/README.md gives
the whole causal graph with its formulas):

* relevance  -- `sigmoid(click_logit)`, the probability of a click on an item examined for
  sure and without neighbours (`p_click_rel` in the truth log). The logit adds a global bias,
  the scenario's level offset and taste, the user's long-term and short-term affinity to the
  item, the item's quality and a repurchase boost;
* scenario taste -- scenarios differ in what they like, not only in how much they click and
  buy (the multi-scenario data of HMoE: Improving Multi-Scenario Learning to Rank in
  E-commerce by Exploiting Task Relationships in the Label Space): scenario s has a strength,
  a logit per category (a taste shared by all scenarios plus its own) and a slope on the
  item's price tier; `centred_taste` turns them into click and (weaker) order logit terms per
  item that leave the mean rates in place;
* examination -- falls with position and page: `(1/position)^0.4 * page_decay^(page-1)`
  (the "position bias" of DMT: Deep Multifaceted Transformers for Multi-objective Ranking in
  Large-Scale E-commerce Recommender Systems, section 4.4);
* neighbour factor -- `exp(-0.15 * n)` where n is the number of same-category items among the
  K = 6 nearest other items by position in the request (ties to the smaller position), DMT's
  "neighboring bias": "a user may less likely to click a product if it is surrounded by many
  similar ones in the same category";
* post-click behaviour -- cart and wish (ESM2's "Deterministic Action") and order, following
  the graph impression -> click -> D(O)Action -> purchase of ESM2: Entire Space Multi-Task
  Modeling via Post-Click Behavior Decomposition for Conversion Rate Prediction (eq. 1-4):
  `post_click` and `order_given_click`; a cart or wish raises the order logit by
  `order_after_daction`, a click without one adds `order_without_daction` (< 0);
* repurchase -- "durable" categories (DMT 6.2.1: "a product that has a long repurchase period
  (i.e., computer)") suppress orders for a long time after an order, "consumable" ones
  ("milk") invite reorders of the same items after a category-specific period.
"""

import dataclasses
import datetime as dt
from typing import Tuple

import numpy as np

DAY = 86_400
DURABLE, CONSUMABLE = 0, 1
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
# Taste re-centring for the logging policy's selection (see `centred_taste`), fitted once on
# simulations of the default world: shown items' taste rises by ~0.9 var(raw) in the click
# logit, of which log-mean-exp centring removes ~var/2.
_CLICK_SELECTION, _ORDER_SELECTION = 0.33, 0.4


@dataclasses.dataclass
class SimulationConfig:
    """World size, behaviour constants and output format. Defaults give ~0.43M impressions."""

    users: int = 2000
    days: int = 14
    seed: int = 0
    start_date: str = "2026-10-01"
    format: str = "jsonl"  # "jsonl" (.jsonl.gz) or "parquet"
    # Event logs as daily partitions LOG/dt=YYYY-MM-DD/part-0.* (else LOG/YYYY-MM-DD.*).
    partition_by_day: bool = False
    n_items: int = 5000
    n_categories: int = 60
    n_brands: int = 400
    n_shops: int = 300
    dim: int = 16  # embedding size of items and user preferences
    scenarios: Tuple[str, ...] = ("NL", "DE", "FR", "PL")
    scenario_weights: Tuple[float, ...] = (0.2, 0.35, 0.3, 0.15)
    # Scenario-specific logit offsets (HMoE-style multi-scenario data): CTR and CVR levels differ.
    scenario_click_offsets: Tuple[float, ...] = (0.3, 0.0, -0.25, -0.55)
    scenario_order_offsets: Tuple[float, ...] = (0.4, 0.1, -0.3, -0.7)
    # Scenario taste, drawn by `build_world`: scenarios differ in what they like, not only in
    # levels. Scenario s adds taste[s, item] = strength[s] * (category_taste[s, category] +
    # price_slope[s] * price_tier) to the click logit (and taste_order_share of it to the order
    # logit), re-centred per scenario so that the mean click and order odds over the catalogue
    # do not move. strength[s] ~ U(scenario_taste_range) * scenario_taste_scale (0: no taste);
    # category_taste[s] ~ N(0, category_taste_std^2), correlated across scenarios by
    # scenario_taste_correlation (a shared taste plus the scenario's own);
    # price_slope[s] ~ N(0, price_taste_std^2) on price_tier, the item's log price relative to
    # its category's typical price in standard deviations (> 0: likes premium items).
    scenario_taste_scale: float = 1.0
    scenario_taste_range: Tuple[float, float] = (0.5, 1.5)
    category_taste_std: float = 0.6
    scenario_taste_correlation: float = 0.3
    price_taste_std: float = 0.4
    taste_order_share: float = 0.5
    page_size: int = 10
    # Traffic: sessions per user-day ~ Poisson(activity), activity ~ Gamma(mean sessions_per_day);
    # 1-3 requests per session; ~19 items shown per request (~15 impressions per user-day).
    sessions_per_day: float = 0.4
    max_requests_per_session: int = 3
    min_shown: int = 10
    max_shown: int = 40
    shown_extra_mean: float = 10.0  # shown = min_shown + Exp(mean) clipped to max_shown
    n_candidates: int = 300
    policy_noise: float = 1.0  # std of the logging policy's error on the relevance logit
    organic_per_session: float = 0.6  # organic (non-recommended) clicks per expected session
    # Behaviour model (logits); calibrated for CTR ~4.5 %, order/impression ~0.2 %.
    click_bias: float = -4.3
    affinity_scale: float = 1.8
    short_term_weight: float = 0.9
    short_term_decay: float = 0.7  # per click: s <- decay * s + (1 - decay) * item embedding
    short_term_half_life_days: float = 2.0
    position_power: float = 0.4
    page_decay: float = 0.75
    neighbour_penalty: float = 0.15
    num_neighbours: int = 6
    cart_bias: float = -3.9
    wish_bias: float = -4.0
    order_bias: float = -5.8
    order_after_daction: float = 1.4  # extra order logit when the click led to cart or wish
    order_without_daction: float = -0.6
    cart_item_boost: float = 1.5  # clicked again while in the cart
    price_weight: float = 0.5
    durable_share: float = 0.45
    durable_order_penalty: float = -4.0
    durable_period_days: float = 120.0
    consumable_period_days: Tuple[float, float] = (2.0, 10.0)  # range of category periods
    consumable_early_penalty: float = -1.0
    consumable_due_boost: float = 1.0
    same_item_click_boost: float = 0.6
    same_item_order_boost: float = 0.7
    cart_organic_order_prob: float = 0.12  # ESM2: "12% ... bought eventually" after carting
    wish_organic_order_prob: float = 0.08
    consumable_reorder_prob: float = 0.4

    def __post_init__(self):
        self.scenarios = tuple(self.scenarios)
        if self.format not in ("jsonl", "parquet"):
            raise ValueError(f"format must be 'jsonl' or 'parquet', not {self.format!r}")
        if self.users < 1 or self.days < 1:
            raise ValueError("users and days must be >= 1")
        if self.n_items < self.n_categories:
            raise ValueError(f"n_items (--items) must be >= n_categories, {self.n_categories}, "
                             f"got {self.n_items} (every category holds an item)")
        if self.seed < 0:  # numpy's SeedSequence takes non-negative integers only
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        try:
            dt.datetime.strptime(self.start_date, "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"start_date must be YYYY-MM-DD, not {self.start_date!r}") from None
        n = len(self.scenarios)
        # Scenarios beyond the default four get evenly spread offsets, so any list works.
        for name, lo, hi in (("scenario_click_offsets", 0.3, -0.55),
                             ("scenario_order_offsets", 0.4, -0.7)):
            if len(getattr(self, name)) != n:
                setattr(self, name, tuple(np.linspace(lo, hi, n).round(3)))
        if len(self.scenario_weights) != n:
            self.scenario_weights = (1.0 / n,) * n
        self.scenario_taste_range = tuple(self.scenario_taste_range)
        if (len(self.scenario_taste_range) != 2 or self.scenario_taste_scale < 0
                or not 0.0 <= self.scenario_taste_correlation <= 1.0):
            raise ValueError("scenario_taste_range must be (low, high), scenario_taste_scale "
                             ">= 0 and scenario_taste_correlation in [0, 1]")

    @property
    def start_ts(self) -> int:
        day = dt.datetime.strptime(self.start_date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        return int(day.timestamp())

    @property
    def end_ts(self) -> int:
        return self.start_ts + self.days * DAY


@dataclasses.dataclass
class World:
    """The latent world. Items and users are indexed 0..n-1 (ids are "i{index}", "u{index}")."""

    item_category: np.ndarray  # int
    item_brand: np.ndarray
    item_shop: np.ndarray
    item_price: np.ndarray  # float, currency units
    item_quality: np.ndarray  # float, ~N(0, 1) incl. brand effect
    item_embedding: np.ndarray  # (n_items, dim)
    item_popularity: np.ndarray  # cumulative sampling distribution of popular items
    items_by_category: np.ndarray  # item indices sorted by category
    category_start: np.ndarray  # offsets into items_by_category, length n_categories + 1
    category_type: np.ndarray  # DURABLE or CONSUMABLE
    category_period: np.ndarray  # seconds: durable suppression / consumable reorder period
    user_preference: np.ndarray  # (users, dim) long-term preference
    user_categories: np.ndarray  # (users, 3) preferred categories (the policy's recall)
    user_scenario: np.ndarray  # int index into config.scenarios
    user_age_band: np.ndarray  # int index into AGE_BANDS
    user_purchase_power: np.ndarray  # float, currency units
    user_activity: np.ndarray  # expected sessions per day
    item_price_tier: np.ndarray  # log price vs its category's typical price, in std units
    scenario_taste_strength: np.ndarray  # (scenarios,) how strongly taste matters
    scenario_category_taste: np.ndarray  # (scenarios, n_categories) logit, before strength
    scenario_price_slope: np.ndarray  # (scenarios,) logit per price tier, before strength
    scenario_click_taste: np.ndarray  # (scenarios, n_items) click logit term, re-centred
    scenario_order_taste: np.ndarray  # (scenarios, n_items) order logit term, re-centred


def build_world(config: SimulationConfig, rng: np.random.Generator) -> World:
    """Draws the latent world; same config and generator state -> same world."""
    c = config
    cat_weights = rng.dirichlet(np.full(c.n_categories, 2.0))
    item_category = rng.choice(c.n_categories, size=c.n_items, p=cat_weights)
    item_category[: min(c.n_categories, c.n_items)] = np.arange(min(c.n_categories, c.n_items))
    items_by_category = np.argsort(item_category, kind="stable")
    category_start = np.searchsorted(item_category[items_by_category],
                                     np.arange(c.n_categories + 1))
    category_type = np.where(rng.random(c.n_categories) < c.durable_share, DURABLE, CONSUMABLE)
    lo, hi = c.consumable_period_days
    category_period = np.where(
        category_type == DURABLE, c.durable_period_days, rng.uniform(lo, hi, c.n_categories)
    ) * DAY

    # Durables are expensive and consumables cheap, so price and category interact in orders.
    category_price = np.where(category_type == DURABLE, rng.lognormal(5.0, 0.7, c.n_categories),
                              rng.lognormal(2.5, 0.6, c.n_categories))
    # Brands live in one category each, so brand_id carries category and quality signal.
    brand_category = rng.integers(0, c.n_categories, c.n_brands)
    brand_effect = rng.normal(0.0, 0.4, c.n_brands)
    item_brand = _pick_brand(item_category, brand_category, c.n_brands, rng)
    item_shop = rng.integers(0, c.n_shops, c.n_items)
    item_quality = rng.normal(0.0, 0.8, c.n_items) + brand_effect[item_brand]
    item_price = np.round(category_price[item_category] * rng.lognormal(0.0, 0.45, c.n_items)
                          * np.exp(0.15 * item_quality), 2)

    centroids = rng.normal(0.0, 1.0, (c.n_categories, c.dim)) / np.sqrt(c.dim)
    noise = rng.normal(0.0, 0.5, (c.n_items, c.dim)) / np.sqrt(c.dim)
    item_embedding = centroids[item_category] + noise
    popularity = np.exp(0.8 * item_quality + rng.normal(0.0, 1.0, c.n_items))
    popularity_cdf = np.cumsum(popularity / popularity.sum())

    users = c.users
    user_categories = np.stack(
        [rng.choice(c.n_categories, size=3, replace=False, p=cat_weights) for _ in range(users)]
    )
    mix = rng.dirichlet(np.ones(3), users)
    age_vectors = rng.normal(0.0, 0.4, (len(AGE_BANDS), c.dim)) / np.sqrt(c.dim)
    user_age_band = rng.integers(0, len(AGE_BANDS), users)
    user_preference = (
        np.einsum("uk,ukd->ud", mix * 1.6, centroids[user_categories])
        + age_vectors[user_age_band]
        + rng.normal(0.0, 0.4, (users, c.dim)) / np.sqrt(c.dim)
    )
    user_scenario = rng.choice(len(c.scenarios), size=users, p=_normalised(c.scenario_weights))
    user_purchase_power = np.round(rng.lognormal(4.0, 0.8, users), 2)
    user_activity = rng.gamma(2.0, c.sessions_per_day / 2.0, users)

    # Scenario taste: drawn last, so the items and users above do not depend on it.
    n_scen = len(c.scenarios)
    strength = c.scenario_taste_scale * rng.uniform(*c.scenario_taste_range, n_scen)
    rho = c.scenario_taste_correlation
    category_taste = c.category_taste_std * (
        np.sqrt(rho) * rng.normal(0.0, 1.0, c.n_categories)
        + np.sqrt(1.0 - rho) * rng.normal(0.0, 1.0, (n_scen, c.n_categories)))
    price_slope = rng.normal(0.0, c.price_taste_std, n_scen)
    relative = np.log(item_price) - np.log(category_price[item_category])
    item_price_tier = (relative - relative.mean()) / max(relative.std(), 1e-9)
    raw = strength[:, None] * (category_taste[:, item_category]
                               + price_slope[:, None] * item_price_tier)
    return World(
        item_category=item_category,
        item_brand=item_brand,
        item_shop=item_shop,
        item_price=item_price,
        item_quality=item_quality,
        item_embedding=item_embedding,
        item_popularity=popularity_cdf,
        items_by_category=items_by_category,
        category_start=category_start,
        category_type=category_type,
        category_period=category_period,
        user_preference=user_preference,
        user_categories=user_categories,
        user_scenario=user_scenario,
        user_age_band=user_age_band,
        user_purchase_power=user_purchase_power,
        user_activity=user_activity,
        item_price_tier=item_price_tier,
        scenario_taste_strength=strength,
        scenario_category_taste=category_taste,
        scenario_price_slope=price_slope,
        scenario_click_taste=centred_taste(raw, 1.0, _CLICK_SELECTION),
        scenario_order_taste=centred_taste(raw, c.taste_order_share, _ORDER_SELECTION),
    )


def _normalised(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _pick_brand(item_category, brand_category, n_brands, rng) -> np.ndarray:
    """A brand of the item's category when the category has one, else any brand."""
    order = np.argsort(brand_category, kind="stable")
    start = np.searchsorted(brand_category[order], np.arange(item_category.max() + 2))
    lo, hi = start[item_category], start[item_category + 1]
    count = hi - lo
    pick = lo + (rng.random(item_category.size) * np.maximum(count, 1)).astype(int)
    fallback = rng.integers(0, n_brands, item_category.size)
    return np.where(count > 0, order[np.minimum(pick, n_brands - 1)], fallback)


# --- Behaviour model -------------------------------------------------------------------------


def centred_taste(raw: np.ndarray, share: float, selection: float) -> np.ndarray:
    """The logit term share * raw, re-centred per scenario (row) so that taste moves which items
    a scenario clicks and buys but not how much: minus log(mean over the catalogue of
    exp(share * raw)), which keeps the mean odds of a uniformly drawn item, and minus
    selection * var(raw), because the logging policy shows the items a scenario likes (by the
    true click logit) and so raises the shown items' taste by about that much."""
    term = share * raw
    top = term.max(axis=1, keepdims=True)
    lme = top + np.log(np.exp(term - top).mean(axis=1, keepdims=True))
    return term - lme - selection * raw.var(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def examination(position: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """P(examined) by position and page (DMT's Position_index and Position_page biases)."""
    page = (position - 1) // config.page_size + 1
    return (1.0 / position) ** config.position_power * config.page_decay ** (page - 1)


_NEIGHBOURS = {}


def neighbour_index(n: int, k: int) -> np.ndarray:
    """(n, k) indices of the k nearest other positions, nearer first, ties to the smaller
    position (so 3 above and 3 below inside the list, 6 below at the top); -1 where the list
    is shorter than k + 1. The ingest's `neighbor_categories` feature uses the same rule."""
    key = (n, k)
    if key not in _NEIGHBOURS:
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        distance = np.where(i == j, n + 1, np.abs(i - j))  # self sorts last
        nearest = np.argsort(distance * (n + 1) + j, axis=1, kind="stable")[:, :k]
        nearest = np.where(np.arange(nearest.shape[1]) < n - 1, nearest, -1)
        if nearest.shape[1] < k:
            nearest = np.pad(nearest, ((0, 0), (0, k - nearest.shape[1])), constant_values=-1)
        _NEIGHBOURS[key] = nearest
    return _NEIGHBOURS[key]


def neighbour_factor(categories: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """exp(-penalty * same-category neighbours): DMT's neighbouring bias."""
    nb = neighbour_index(categories.size, config.num_neighbours)
    padded = np.append(categories, -1)  # index -1 -> category -1, never equal
    same = (padded[nb] == categories[:, None]).sum(axis=1)
    return np.exp(-config.neighbour_penalty * same)


def display_factor(categories: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """P(click) / p_click_rel of each item of a list shown in this order at positions 1..n:
    examination by position and page times the neighbour factor of the categories around it.
    The simulator draws clicks with it; `funnel abtest` re-applies it to a re-ranked list, so
    expected clicks are display_factor * p_click_rel and expected orders display_factor *
    p_order_rel (the post-click graph does not depend on the position)."""
    position = np.arange(1, np.size(categories) + 1)
    return examination(position, config) * neighbour_factor(categories, config)


def post_click(cart_logit, wish_logit, order_logit, config: SimulationConfig):
    """ESM2's post-click graph (eq. 1-4): P(cart | click), P(wish | click) and P(order | click)
    after a DAction (cart or wish, drawn independently) or without one (OAction):
    sigmoid(order_logit + order_after_daction) and sigmoid(order_logit + order_without_daction)."""
    return (sigmoid(cart_logit), sigmoid(wish_logit),
            sigmoid(order_logit + config.order_after_daction),
            sigmoid(order_logit + config.order_without_daction))


def order_given_click(p_cart, p_wish, p_order_daction, p_order_oaction):
    """P(order | click) = P(DAction) P(order | DAction) + (1 - P(DAction)) P(order | OAction),
    with P(DAction) = 1 - (1 - P(cart)) (1 - P(wish))."""
    p_daction = 1.0 - (1.0 - p_cart) * (1.0 - p_wish)
    return p_daction * p_order_daction + (1.0 - p_daction) * p_order_oaction
