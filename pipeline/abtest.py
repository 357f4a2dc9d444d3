"""`funnel abtest`: a simulated online A/B test of two served models on a simulated world, in
the format of the DMT paper's Table 6 (Deep Multifaceted Transformers for Multi-objective
Ranking in Large-Scale E-commerce Recommender Systems, 6.3: CTR, CVR and GMV per arm).

The eval split's requests (the last UTC day by default) are replayed. Each arm re-ranks each
request's shown items by its `score` (ties keep the logged order) and the world's own behaviour
model gives what the request would have yielded: `simulation.world.display_factor` (examination
by position and page, neighbour factor of the new order) times the truth log's position-free
probabilities, so per request

    clicks = sum_i f_i * p_click_rel_i,  orders = sum_i f_i * p_order_rel_i,
    gmv    = sum_i f_i * p_order_rel_i * item_price_i,

with f the display factor of item i at its new position. These are expectations, so the only
noise left is which requests the day happened to have: the lift of B over A gets a 95 %
interval from a paired bootstrap over requests (both arms on the same resampled requests).

What the replay leaves out, as any offline replay does: the user's later requests do not react
to an arm's ranking (short-term interest, carts), and an arm only re-orders the items the
logging policy showed; it cannot show other candidates.
"""

import json
import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from tensorflow.io import gfile

from models import features as F
from simulation.simulator import CONFIG_FILE, read_config
from simulation.world import SimulationConfig, display_factor

ARMS = ("A", "B")
# metric -> (numerator, denominator) of per-request sums; the value is sum(num) / sum(den).
METRICS = {"clicks": ("clicks", "requests"), "orders": ("orders", "requests"), "gmv": ("gmv", "requests"),
           "cvr": ("orders", "clicks")}
TRUTH_COLUMNS = ("p_click_rel", "p_order_rel")
KEEP = (F.REQUEST_ID, F.POSITION, F.CATEGORY_ID, F.ITEM_PRICE)
LOGGING_POLICY = "logging policy"
DEFAULT_SAMPLES = 2000
_CELLS_PER_CHUNK = 20_000_000  # bootstrap weights held at once (float64: 160 MB)


class AbtestError(ValueError):
    """Logs or models an A/B replay cannot use; the message names what is missing."""


def world_truth(logs_dir: str):
    """(truth frame, SimulationConfig) of a simulated logs directory; AbtestError naming what
    is missing when the logs carry no simulator truth (real logs have none)."""
    from pipeline.report import read_truth

    truth = read_truth(logs_dir) if gfile.exists(os.path.join(logs_dir, "truth")) else None
    missing = []
    if truth is None:
        missing.append("truth/ (the simulator's per-impression probabilities)")
    else:
        missing += [f"truth column {c}" for c in TRUTH_COLUMNS if c not in truth]
    if not gfile.exists(os.path.join(logs_dir, CONFIG_FILE)):
        missing.append(f"{CONFIG_FILE} (the world's behaviour constants)")
    if missing:
        raise AbtestError(f"{logs_dir}: funnel abtest replays a simulated world (`funnel simulate`) and these logs "
                          f"lack {', '.join(missing)}")
    return truth[[F.IMPRESSION_ID, *TRUTH_COLUMNS]], read_config(logs_dir)


def replay(frame: pd.DataFrame, ranking: np.ndarray, config: SimulationConfig) -> pd.DataFrame:
    """Expected clicks, orders and GMV of each request of `frame` (request_id, position,
    category_id, item_price, p_click_rel, p_order_rel; one row per shown item) when its items are
    shown in the order of `ranking` (higher first; ties in the logged order). One row per
    request, in order of first appearance."""
    codes, requests = pd.factorize(frame[F.REQUEST_ID], sort=False)
    categories = pd.factorize(frame[F.CATEGORY_ID])[0]  # codes >= 0: equality is all the world uses
    order = np.lexsort((frame[F.POSITION].to_numpy(), -np.asarray(ranking, dtype=np.float64), codes))
    factor = np.empty(len(frame))
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds):
        factor[rows] = display_factor(categories[rows], config)
    clicks = factor * frame["p_click_rel"].to_numpy()
    orders = factor * frame["p_order_rel"].to_numpy()
    sums = pd.DataFrame({"clicks": clicks, "orders": orders, "gmv": orders * frame[F.ITEM_PRICE].to_numpy(),
                         "request": codes}).groupby("request", sort=True).sum()
    return sums.set_index(requests[sums.index.to_numpy()])


def _value(sums: Dict[str, np.ndarray], metric: str, weights: np.ndarray) -> np.ndarray:
    """The metric per row of `weights` (requests' multiplicities: a resample, or all ones)."""
    num, den = METRICS[metric]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (weights @ sums[num]) / (weights @ sums[den])


def paired_lift(a: pd.DataFrame, b: pd.DataFrame, samples: int = DEFAULT_SAMPLES, seed: int = 0
                ) -> Dict[str, Dict[str, object]]:
    """Relative lift of arm b over arm a per metric, value(b) / value(a) - 1, with the 95 %
    percentile interval of a paired bootstrap over requests (`samples` resamples, the same
    resampled requests for both arms). a and b: replay() of the same requests."""
    if not a.index.equals(b.index):
        raise ValueError("the arms must be replayed on the same requests")
    arms = [{**{c: df[c].to_numpy() for c in ("clicks", "orders", "gmv")}, "requests": np.ones(len(df))}
            for df in (a, b)]
    n = len(a)
    rng = np.random.default_rng(seed)
    boot = {metric: [] for metric in METRICS}
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, samples, chunk):
        # Resampling n requests with replacement = multinomial counts per request.
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, samples - start)).astype(np.float64)
        for metric in METRICS:
            with np.errstate(divide="ignore", invalid="ignore"):
                boot[metric].append(_value(arms[1], metric, weights) / _value(arms[0], metric, weights) - 1.0)
    lift = {}
    every = np.ones((1, n))  # the day's requests as they are
    for metric in METRICS:
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = float(_value(arms[1], metric, every)[0] / _value(arms[0], metric, every)[0] - 1.0)
        draws = np.concatenate(boot[metric])
        finite = np.isfinite(relative) and np.isfinite(draws).all()
        lift[metric] = {"relative": relative if finite else None,
                        "ci95": [float(v) for v in np.percentile(draws, [2.5, 97.5])] if finite else None}
    return lift


def arm_figures(sums: pd.DataFrame) -> Dict[str, float]:
    """Per request means of clicks, orders and GMV, and CVR (orders / clicks)."""
    arm = {c: float(sums[c].to_numpy().mean()) if len(sums) else float("nan") for c in ("clicks", "orders", "gmv")}
    arm["cvr"] = float(sums["orders"].sum() / sums["clicks"].sum()) if sums["clicks"].sum() else float("nan")
    return arm


def run_abtest(frame: pd.DataFrame, scores: Dict[str, np.ndarray], models: Dict[str, str],
               config: SimulationConfig, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict:
    """The A/B result of arms A and B (`scores`: arm -> score per row of `frame`, which holds
    the KEEP columns and the truth's, every request complete)."""
    replays = {arm: replay(frame, scores[arm], config) for arm in ARMS}
    logged = replay(frame, -frame[F.POSITION].to_numpy().astype(np.float64), config)
    return {
        "requests": len(logged), "impressions": len(frame),
        "arms": {arm: {"model": models[arm], **arm_figures(replays[arm])} for arm in ARMS},
        "reference": {LOGGING_POLICY: arm_figures(logged)},
        "lift": paired_lift(replays["A"], replays["B"], samples, seed),
        "bootstrap": {"samples": samples, "seed": seed, "interval": "percentile, paired over requests"},
        "unpriced_impressions": int((frame[F.ITEM_PRICE].to_numpy() <= 0).sum()),
    }


def _complete_requests(frame: pd.DataFrame) -> (pd.DataFrame, int):
    """Rows of the requests whose every item has truth; the number of requests dropped."""
    lacking = frame[list(TRUTH_COLUMNS)].isna().any(axis=1)
    bad = frame.loc[lacking, F.REQUEST_ID].unique()
    return frame[~frame[F.REQUEST_ID].isin(bad)].reset_index(drop=True), len(bad)


def eval_example_files(work_dir: str) -> List[str]:
    """The eval split of the newest Ingest of a `funnel run` in `work_dir` (its ML Metadata)."""
    from pipeline import metadata as metadata_lib

    path = os.path.join(work_dir, "tfx", metadata_lib.SQLITE_FILE)
    if not gfile.exists(path):
        raise AbtestError(f"{work_dir}: no `funnel run` here (no {path})")
    store = metadata_lib.open_store(metadata_lib.connection_config(None, path))
    uri = metadata_lib.latest_output(store, "Ingest", "examples").uri
    return sorted(gfile.glob(os.path.join(uri, f"Split-{F.EVAL_SPLIT}", "*")))


def check_models(models: Sequence[str]) -> None:
    """Two SavedModel directories, A and B, or an error saying what is wrong (before any ingest)."""
    from serving.batch_predict import check_saved_model

    if len(models) != len(ARMS):
        raise AbtestError(f"give exactly two models (--model A --model B), not {len(models)}")
    for path in models:
        check_saved_model(path)


def abtest(logs_dir: str, models: Sequence[str], ingest_config=None, beam_args: Optional[List[str]] = None,
           work_dir: Optional[str] = None, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict:
    """Replays the eval split of `logs_dir` (ingested now with `ingest_config`, or the one a
    `funnel run` in `work_dir` ingested from these logs) under models A and B (SavedModel
    directories with a `score` output)."""
    from components.ingest.config import IngestConfig
    from serving.batch_predict import ingested_examples, score_examples

    check_models(models)
    truth, world = world_truth(logs_dir)
    with tempfile.TemporaryDirectory(prefix="funnel-abtest-") as scratch:
        if work_dir:
            files = eval_example_files(work_dir)
        else:
            files = ingested_examples(logs_dir, scratch, ingest_config or IngestConfig(), beam_args)
        if not files:
            raise AbtestError(f"{logs_dir}: the eval split has no examples")
        scored = {path: score_examples(path, files, KEEP) for path in dict.fromkeys(models)}  # each model once
    return replay_scored({arm: scored[path] for arm, path in zip(ARMS, models)}, truth, world,
                         dict(zip(ARMS, models)), samples, seed)


def replay_scored(scored: Dict[str, pd.DataFrame], truth: pd.DataFrame, world: SimulationConfig,
                  models: Dict[str, str], samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict:
    """run_abtest of arms A and B from their scored eval splits (score_examples of the same
    files, so row i is the same impression in both; the KEEP columns and `score`), the world's
    truth and config; requests without truth for every item are left out and counted."""
    frame = scored["A"]
    for arm, outputs in scored.items():
        if "score" not in outputs:
            raise AbtestError(f"{models[arm]}: the model has no `score` output to rank by")
        if not np.array_equal(outputs[F.IMPRESSION_ID].to_numpy(), frame[F.IMPRESSION_ID].to_numpy()):
            raise AbtestError("the arms were scored on different impressions")
    frame = frame[[F.IMPRESSION_ID, *KEEP]].assign(
        **{f"score_{arm}": scored[arm]["score"].to_numpy() for arm in ARMS})
    frame = frame.merge(truth, how="left", on=F.IMPRESSION_ID)
    frame, dropped = _complete_requests(frame)
    if frame.empty:
        raise AbtestError("no eval request has truth for all its impressions")
    result = run_abtest(frame, {arm: frame[f"score_{arm}"].to_numpy() for arm in ARMS}, models, world, samples, seed)
    result["requests_without_truth"] = dropped
    return result


def summary_line(result: dict) -> str:
    """One line of the lift of B over A (the run's printed summary; the table is in report.html)."""
    cells = []
    for metric in ("clicks", "orders", "gmv"):
        lift = result["lift"][metric]
        low, high = lift["ci95"] or (None, None)
        cells.append(f"{metric} {_percent(lift['relative'])} [{_percent(low)}, {_percent(high)}]")
    return (f"  simulated A/B on {result['requests']} eval requests, {result['arms']['B']['model']} over "
            f"{result['arms']['A']['model']}: " + ", ".join(cells) + " (95 % intervals)")


def _percent(value) -> str:
    return "-" if value is None else f"{value:+.2%}"


def table(result: dict) -> str:
    """The result as the DMT paper's Table 6: per arm the per-request means, then B's lift."""
    columns = ("clicks", "orders", "gmv", "cvr")
    rows = [("A", result["arms"]["A"]), ("B", result["arms"]["B"]),
            (LOGGING_POLICY, result["reference"][LOGGING_POLICY])]
    lines = [f"simulated online A/B test: {result['requests']} requests, {result['impressions']} impressions; "
             "expected events per request under the world's behaviour model",
             "| arm | model | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for name, arm in rows:
        lines.append(f"| {name} | {arm.get('model', 'the logged order')} | "
                     + " | ".join(f"{arm[c]:.4%}" if c == "cvr" else f"{arm[c]:.4f}" for c in columns) + " |")
    cells = []
    for c in columns:
        lift = result["lift"][c]
        ci = lift["ci95"]
        significant = ci is not None and (ci[0] > 0 or ci[1] < 0)
        cells.append(f"{_percent(lift['relative'])}{'*' if significant else ''} "
                     f"[{_percent(ci and ci[0])}, {_percent(ci and ci[1])}]")
    lines.append("| lift of B over A | 95 % interval | " + " | ".join(cells) + " |")
    samples = result["bootstrap"]["samples"]
    lines.append(f"  clicks, orders, gmv: expected per request; cvr = orders / clicks. Intervals: paired bootstrap "
                 f"over requests ({samples} resamples); * the interval excludes zero")
    return "\n".join(lines)


def write(result: dict, path: str) -> None:
    if os.path.dirname(path):
        gfile.makedirs(os.path.dirname(path))
    with gfile.GFile(path, "w") as f:
        f.write(json.dumps(result, indent=2, sort_keys=True))
