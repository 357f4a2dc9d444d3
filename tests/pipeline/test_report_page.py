"""Tests of the run's report page (pipeline/report_page.py) on a synthetic evaluation: what the HTML
holds, that it fetches nothing, that its images are PNGs, and how headless Chromium renders it."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models import features as F
from pipeline import abtest, report, report_page
from simulation import SimulationConfig
from tests import browser

TASKS = ("click", "order")
ROWS = ("dmt", "dnn-base")
GATES = {"click": {"all": [0.5, 0.3, 0.2], "NL": [0.7, 0.2, 0.1], "DE": [0.2, 0.3, 0.5]},
         "order": {"all": [0.1, 0.6, 0.3], "NL": [0.1, 0.8, 0.1], "DE": [0.2, 0.4, 0.4]}}
# two sample impressions over a 4-element sequence (the second has 2 elements) and a 2-element one
ATTENTION = {"click": {"weights": [[0.4, 0.3, 0.2, 0.1], [0.7, 0.3, 0.0, 0.0]], "mask": [[1, 1, 1, 1], [1, 1, 0, 0]]},
             "order": {"weights": [[1.0, 0.0], [0.0, 0.0]], "mask": [[1, 0], [0, 0]]}}
# the Evaluator's figures as report.evaluator_figures reads them, with a refused bound
EVALUATOR = {"candidate": {"all": {t: {"auc": 0.7, "gauc": 0.6, "ndcg@4": 0.3, "ndcg@10": 0.4} for t in TASKS}},
             "last_blessed": {"all": {t: {"auc": 0.69, "gauc": 0.6, "ndcg@4": 0.35, "ndcg@10": 0.45} for t in TASKS}},
             "failures": ["click ndcg@4 on all: <change below the bound>"]}
IMAGES = len(TASKS) + len(GATES) + len(ATTENTION)  # a figure per task, a heat map per gate and per sequence
IMG = re.compile(r'<img[^>]*\bsrc="([^"]*)"')
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scored_frame(seed: int, requests: int = 40, shown: int = 10) -> pd.DataFrame:
    """A scored eval split as evaluate() keeps it: ids, position and page, predictions, labels
    drawn from the predictions (so the model is calibrated and its curves meaningful) and truth."""
    rng = np.random.default_rng(seed)
    n = requests * shown
    p_click = np.clip(rng.beta(2, 12, n), 1e-4, 1 - 1e-4)
    p_order = p_click * rng.uniform(0.05, 0.3, n)
    click = rng.random(n) < p_click
    order = click & (rng.random(n) < p_order / p_click)
    position = np.tile(np.arange(1, shown + 1), requests)
    return pd.DataFrame({
        F.USER_ID: np.repeat([f"u{i % 15}" for i in range(requests)], shown),
        F.REQUEST_ID: np.repeat([f"r{i}" for i in range(requests)], shown),
        F.POSITION: position, F.PAGE: (position - 1) // 4 + 1,
        F.SCENARIO: np.repeat(rng.choice(["NL", "DE"], requests), shown),
        F.CATEGORY_ID: rng.choice(["c1", "c2", "c3"], n), F.ITEM_PRICE: rng.uniform(5, 50, n),
        "label_click": click.astype(np.int64), "label_order": order.astype(np.int64),
        "click": p_click, "order": p_order, "score": p_click + p_order,
        "p_click_rel": np.clip(p_click + rng.normal(0, 0.01, n), 0, 1), "p_click": p_click,
        "p_order_rel": p_order})


def evaluation(frames, abtest_result=None) -> dict:
    """A result shaped as report.evaluate() returns it, its figures computed by report's own
    functions on `frames`; the first row is the model, the second the baseline."""
    model, baseline = list(frames)
    result = {"rows": {"model": model, "baseline": baseline}, "truth": True, "eval_examples": len(frames[model]),
              "models": {name: report.task_figures(frame) for name, frame in frames.items()},
              "slices": {name: report.slices(frame) for name, frame in frames.items()},
              "ranking": {**report.ranking_quality(frames[model], f"{model} "),
                          **report.ranking_quality(frames[baseline], f"{baseline} ", logging_policy=False)},
              "blessed": True, "pushed_version": "/work/serving/1764547200",
              "calibration": {"calibration": {"type": "reference", "position": 1, "page": 1},
                              "reference_bias_logit": -0.25},
              "ingest": {"records_read": 5200, "records_quarantined": 3, "examples": {"train": 4000, "eval": 400},
                         "labels": {"click": 60, "order": 9}}}
    auc = {name: {t: v["auc"] for t, v in tasks.items()} for name, tasks in result["models"].items()}
    result["rela_impr"] = result["rela_impr_served"] = {
        t: (auc[model][t] - 0.5) / (auc[baseline][t] - 0.5) - 1 for t in TASKS}
    if abtest_result is not None:
        result["abtest"] = abtest_result
    return result


@pytest.fixture(scope="module")
def frames():
    return {name: scored_frame(seed) for seed, name in enumerate(ROWS)}


@pytest.fixture(scope="module")
def abtest_result(frames):
    frame = frames[ROWS[0]]
    return abtest.run_abtest(frame, {"A": frames[ROWS[1]]["score"].to_numpy(), "B": frame["score"].to_numpy()},
                             {"A": "serving/1", "B": "serving/2"}, SimulationConfig(), samples=200)


@pytest.fixture(scope="module")
def page(frames, abtest_result):
    result = evaluation(frames, abtest_result)
    result["evaluator"] = EVALUATOR
    return report_page.render(result, frames, GATES, ATTENTION)


def test_page_is_self_contained_and_holds_every_row_task_and_section(frames, page):
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?:""", page, re.I)
    assert "<link" not in page.lower() and not re.search(r"<script[^>]*\bsrc", page, re.I)
    assert "url(" not in page and "@import" not in page  # the style fetches nothing either
    for name in list(ROWS) + list(TASKS):
        assert f"<td>{name}</td>" in page
    assert "Simulated online A/B test" in page and "lift of B over A" in page
    assert "Gates of the mixture" in page and "RelaImpr over the baseline" in page
    assert "Decoder attention" in page and "The Evaluator&#x27;s blessing" in page
    assert "Not blessed: click ndcg@4 on all: &lt;change below the bound&gt;" in page
    without = report_page.render(evaluation(frames), frames)
    for section in ("A/B test", "lift of B over A", "Gates", "Decoder attention", "Evaluator"):
        assert section not in without


def test_strings_from_the_data_are_escaped(frames):
    odd = {"<b>bold</b>": frames[ROWS[0]], ROWS[1]: frames[ROWS[1]]}
    page = report_page.render(evaluation(odd), odd, {"click": {"all": [0.5, 0.5], "$US & <EU>": [0.9, 0.1]}})
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert '"page": 1, "position": 1, "type": "reference"' not in page  # quotes escaped too
    assert "{&quot;page&quot;: 1, &quot;position&quot;: 1, &quot;type&quot;: &quot;reference&quot;}" in page


def test_relaimpr_names_the_offline_comparison_only_with_a_logged_row(frames):
    result = evaluation(frames)
    assert "served networks" in report_page.render(result, {}) and "offline evaluation" not in report_page.render(
        result, {})
    logged = f"{ROWS[0]}{report.LOGGED_SUFFIX}"
    result["rows"]["logged"] = logged
    result["models"][logged] = result["models"][ROWS[0]]
    assert f"<td>{logged} over {ROWS[1]}</td><td>offline evaluation" in report_page.render(result, {})


def test_relaimpr_carries_the_paired_tests_p_value(frames):
    result = evaluation(frames)
    assert "(p " not in report_page.render(result, {})  # a report written before the test: RelaImpr alone
    result["rela_impr_served_test"] = {"click": {"difference": 0.01, "standard_error": 0.004, "p_value": 0.0124},
                                       "order": {"difference": float("nan"), "standard_error": float("nan"),
                                                 "p_value": float("nan")}}
    page = report_page.render(result, {})
    assert f"{result['rela_impr_served']['click']:+.2%} (p 0.012)</td>" in page
    assert f"{result['rela_impr_served']['order']:+.2%}</td>" in page  # no p where the test has none
    assert "paired test of the two AUCs" in page


def test_missing_figures_show_as_a_dash():
    assert report_page._number(float("nan")) == "-" and report_page._number(None) == "-"
    assert report_page._number(0.123456) == "0.1235" and report_page._number(7) == "7"


def test_every_image_is_an_embedded_png_with_content(page):
    sources = IMG.findall(page)
    assert len(sources) == IMAGES
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        data = base64.b64decode(source[len(prefix):], validate=True)
        assert data.startswith(PNG_MAGIC)
        image = Image.open(io.BytesIO(data))
        assert image.width >= 200 and image.height >= 150
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20  # not blank


def test_reliability_bins_hold_equal_counts_of_the_sorted_predictions():
    predictions = np.arange(20, dtype=np.float64) / 20
    labels = (predictions >= 0.5).astype(np.float64)
    mean_prediction, rate = report_page.reliability(labels, predictions, bins=4)
    np.testing.assert_allclose(mean_prediction, [0.1, 0.35, 0.6, 0.85])
    np.testing.assert_allclose(rate, [0, 0, 1, 1])


def tables_of(dom: str):
    """The <table> elements of a DOM, each as its text."""
    return re.findall(r"<table\b.*?</table>", dom, re.S)


def image_counts(dom: str):
    """(images decoded, images) that the page's load handler wrote on <body>."""
    body = re.search(r"<body[^>]*>", dom).group(0)
    counts = [re.search(fr'data-images-{what}="(\d+)"', body) for what in ("loaded", "total")]
    assert all(counts), f"the page's image check did not run: {body}"
    return tuple(int(c.group(1)) for c in counts)


def test_chromium_renders_the_tables_and_every_image(page, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    dom, screenshot = browser.render(str(path), str(tmp_path))
    shot = Image.open(screenshot)
    assert shot.size == browser.WINDOW
    colours = shot.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 100, "the screenshot is (nearly) a single colour"
    tables = tables_of(dom)
    assert len(tables) == 6  # metrics, RelaImpr, the Evaluator, truth ranking, slices, A/B test
    for table in tables:
        assert table.count("<tr") >= 2  # a header and at least one row
    loaded, total = image_counts(dom)
    assert loaded == total == IMAGES


def test_chromium_check_sees_a_broken_image(page, tmp_path):
    # The first image's data is still base64 but no longer a PNG: the browser cannot decode it.
    broken = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    loaded, total = image_counts(browser.render(str(path), str(tmp_path))[0])
    assert total == IMAGES and loaded == total - 1
