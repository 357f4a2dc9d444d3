"""Feature names and constants of the funnel training example, defined once.

Every other module (ingest, Transform, the model, serving, tests) imports these names.
One `tf.Example` is written per impression; see README "Training examples" for the
meaning of each feature.
"""

# --- Raw ids carried through for joins, slicing and reporting (not model inputs by default).
IMPRESSION_ID = "impression_id"
REQUEST_ID = "request_id"
USER_ID = "user_id"
SCENARIO = "scenario"
TS = "ts"
# In the transformed examples only: a 63-bit fingerprint of (user_id, request_id), the request an
# example belongs to (request ids may repeat across users). Not a model input: the fusion
# network's per-request loss groups by it (models/fusion_network.py).
REQUEST_KEY = "request_key"
DEFAULT_SCENARIO = "default"

# --- Target item.
ITEM_ID = "item_id"
CATEGORY_ID = "category_id"
BRAND_ID = "brand_id"
SHOP_ID = "shop_id"
ITEM_ID_FEATURES = (ITEM_ID, CATEGORY_ID, BRAND_ID, SHOP_ID)

# --- Labels. `daction` = cart or wish (the ESM^2 "deterministic action").
CLICK = "click"
CART = "cart"
WISH = "wish"
ORDER = "order"
DACTION = "daction"
LABELS = (CLICK, CART, WISH, ORDER, DACTION)

# --- Behaviour sequences (DMT section 4.2.1): the user's events strictly before the
# impression, newest first. Each element carries the four item ids and its age in seconds.
SEQUENCE_CLICK = "click"
SEQUENCE_CART = "cart"
SEQUENCE_ORDER = "order"
DAY_SECONDS = 86_400
# name -> (max length, window in seconds): "recent 50 clicked products within 7 days,
# recent 10 carted or ordered products within a year" (DMT 4.2.1).
SEQUENCES = {
    SEQUENCE_CLICK: (50, 7 * DAY_SECONDS),
    SEQUENCE_CART: (10, 365 * DAY_SECONDS),
    SEQUENCE_ORDER: (10, 365 * DAY_SECONDS),
}
SEQUENCE_AGE = "age"
SEQUENCE_ELEMENT_FIELDS = ITEM_ID_FEATURES + (SEQUENCE_AGE,)


def sequence_name(sequence: str) -> str:
    """Name of a behaviour sequence as a whole (all its element fields), e.g. `click_sequence`."""
    return f"{sequence}_sequence"


def sequence_feature(sequence: str, field: str) -> str:
    """Name of one field of a behaviour sequence, e.g. `click_sequence_item_id`."""
    return f"{sequence_name(sequence)}_{field}"


SEQUENCE_FEATURES = tuple(
    sequence_feature(s, f) for s in SEQUENCES for f in SEQUENCE_ELEMENT_FIELDS
)

# --- Bias features (DMT section 4.4): position, page and neighbouring categories.
POSITION = "position"
PAGE = "page"
NEIGHBOR_CATEGORIES = "neighbor_categories"
NUM_NEIGHBORS = 6  # K in the DMT paper
NEIGHBOR_PAD = ""  # category of an absent neighbour
MAX_POSITION = 400  # "We set the maximum number of page and index as 100 and 400"
MAX_PAGE = 100
BIAS_FEATURES = (POSITION, PAGE, NEIGHBOR_CATEGORIES)

# --- Point-in-time dense features. Only events strictly before the impression enter.
# Item statistics are refreshed hourly: they count events in the complete UTC hours
# before the impression's hour (the way a production feature store serves them).
# User statistics are exact to the second.
HOUR_SECONDS = 3_600
ITEM_COUNT_FEATURES = {
    # name: (event log, window in days)
    "item_impressions_1d": ("impressions", 1),
    "item_clicks_1d": ("clicks", 1),
    "item_carts_1d": ("carts", 1),
    "item_orders_1d": ("orders", 1),
    "item_impressions_7d": ("impressions", 7),
    "item_clicks_7d": ("clicks", 7),
    "item_carts_7d": ("carts", 7),
    "item_orders_7d": ("orders", 7),
}
# Smoothed rates: (numerator + prior_rate * prior_weight) / (denominator + prior_weight).
RATE_PRIOR_WEIGHT = 20.0
ITEM_RATE_FEATURES = {
    # name: (numerator, denominator, prior rate)
    "item_ctr_1d": ("item_clicks_1d", "item_impressions_1d", 0.04),
    "item_ctr_7d": ("item_clicks_7d", "item_impressions_7d", 0.04),
    "item_cvr_1d": ("item_orders_1d", "item_clicks_1d", 0.05),
    "item_cvr_7d": ("item_orders_7d", "item_clicks_7d", 0.05),
}
USER_COUNT_FEATURES = {
    "user_impressions_1d": ("impressions", 1),
    "user_impressions_7d": ("impressions", 7),
    "user_clicks_1d": ("clicks", 1),
    "user_clicks_7d": ("clicks", 7),
    "user_carts_30d": ("carts", 30),
    "user_wishes_30d": ("wishes", 30),
    "user_orders_30d": ("orders", 30),
    "user_orders_365d": ("orders", 365),
}
USER_RATE_FEATURES = {
    "user_ctr_7d": ("user_clicks_7d", "user_impressions_7d", 0.04),
}
# Counts of the user's events on the target item's category / on the target item itself.
USER_CATEGORY_FEATURES = {
    "user_category_clicks_7d": ("clicks", 7),
    "user_category_orders_365d": ("orders", 365),
}
USER_ITEM_FEATURES = {
    "user_item_clicks_7d": ("clicks", 7),
    "user_item_carts_30d": ("carts", 30),
    "user_item_orders_365d": ("orders", 365),
}
ITEM_PRICE = "item_price"
ITEM_PRICE_MISSING = "item_price_missing"
# price / mean price of the user's orders in the past 365 days (1.0 when there are none).
PRICE_TO_USER_ORDER_PRICE = "price_to_user_order_price"
# seconds since the user's last click, capped (the cap also stands for "never").
SECONDS_SINCE_LAST_CLICK = "seconds_since_last_click"
SECONDS_SINCE_LAST_CLICK_CAP = 7 * DAY_SECONDS

DENSE_FEATURES = (
    tuple(ITEM_COUNT_FEATURES)
    + tuple(ITEM_RATE_FEATURES)
    + tuple(USER_COUNT_FEATURES)
    + tuple(USER_RATE_FEATURES)
    + tuple(USER_CATEGORY_FEATURES)
    + tuple(USER_ITEM_FEATURES)
    + (ITEM_PRICE, ITEM_PRICE_MISSING, PRICE_TO_USER_ORDER_PRICE, SECONDS_SINCE_LAST_CLICK)
)

# The `rank` serving signature takes one user's context once per request and the features of
# each candidate: the user-level dense features belong to the context, the rest (item
# statistics, user x item / user x category counts, prices) to the candidates.
USER_DENSE_FEATURES = (
    tuple(USER_COUNT_FEATURES) + tuple(USER_RATE_FEATURES) + (SECONDS_SINCE_LAST_CLICK,)
)
CANDIDATE_DENSE_FEATURES = tuple(f for f in DENSE_FEATURES if f not in USER_DENSE_FEATURES)

# --- Splits: by UTC calendar day; the last `eval_days` days are eval.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
