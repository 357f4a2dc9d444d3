"""`WORK/report.html`: the run's report as one self-contained page, for the people who read a run
without TensorBoard. Nothing on it is fetched: the style is inline and the plots are PNG images
embedded as data URLs, so the file can be mailed, attached to a ticket or opened offline.

The page holds, from the figures `pipeline/report.py`'s evaluate() writes to `WORK/report.json`:

- the run's facts: blessed, pushed version, eval examples, records read and quarantined, the
  served probabilities' calibration;
- the metrics table (each row and task, the columns of the printed table) and RelaImpr over the
  baseline;
- the ranking judged on the simulator's truth and the slices (scenario, result page);
- the simulated online A/B test (`pipeline/abtest.py`, DMT Table 6) when the run has one;
- per task a reliability diagram and a precision-recall curve of each row's scored eval split;
- the mixture's gates (`models/gate_summary.py`) as heat maps (DMT Fig. 3, HMoE Fig. 3), and the
  decoders' attention over each behaviour sequence for sample impressions (`models/attention_summary.py`).

A small inline script writes on <body> how many of the images decoded (`data-images-loaded`) of
how many there are (`data-images-total`), so a headless browser can tell a broken image.
"""

import base64
import html
import io
import json
import math
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve  # scikit-learn comes with TFX
from tensorflow.io import gfile

from pipeline import abtest as abtest_lib
from pipeline import evaluator_metrics
from pipeline.report_columns import EVALUATOR_COLUMNS, METRIC_COLUMNS, METRIC_HEADERS, RANKING_COLUMNS

CALIBRATION_BINS = 10  # equal-count bins of the prediction in the reliability diagram
DPI = 100

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
div.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #555; font-size: 13px; max-width: 70em; }
img { display: inline-block; vertical-align: top; margin: 0.5em 1em 1.5em 0; max-width: 100%; }
"""

# Counts the images that decoded, once the page (and so every image) has loaded.
IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (image) { return image.complete && image.naturalWidth > 0; });
  document.body.setAttribute("data-images-total", images.length);
  document.body.setAttribute("data-images-loaded", loaded.length);
});
"""


def _text(value) -> str:
    return html.escape(str(value))


def _number(value) -> str:
    """Four decimals; integers as they are; None and NaN as "-"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "-" if _missing(value) else f"{float(value):.4f}"


def _fact(value) -> str:
    """A run fact as text: a string as it is, a figure as _number, a setting (a dict) as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.number)):
        return _number(value)
    return json.dumps(value, sort_keys=True)


def _plain(text: str) -> str:
    """`text` for a matplotlib label: a `$` in a name from the data is a dollar, not mathtext."""
    return str(text).replace("$", r"\$")


def _missing(value) -> bool:
    return value is None or math.isnan(float(value))


def _percent(value, sign: str = "+", digits: int = 2) -> str:
    return "-" if _missing(value) else f"{float(value):{sign}.{digits}%}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int) -> str:
    """An HTML table; `rows` hold cell text already escaped or formatted, and the cells from
    column `numeric_from` on are right-aligned figures."""
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    # a wide table (the slices) scrolls on its own instead of widening the page
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_text(title)}</h2>{''.join(parts)}</section>"


def _note(text: str) -> str:
    return f'<p class="note">{_text(text)}</p>'


def _facts(result: dict) -> str:
    ingest = result.get("ingest", {})
    facts = [("model blessed", result.get("blessed")), ("pushed version", result.get("pushed_version") or "none"),
             ("eval examples", result.get("eval_examples")), ("records read", ingest.get("records_read")),
             ("records quarantined", ingest.get("records_quarantined"))]
    facts += [(f"served probabilities: {key}", value) for key, value in sorted(result.get("calibration", {}).items())]
    items = "".join(f"<li>{_text(name)}: <b>{_text(_fact(value))}</b></li>"
                    for name, value in facts if value is not None)
    return f"<ul>{items}</ul>"


def _metrics(result: dict) -> str:
    rows = [[_text(name), _text(task)] + [_number(values.get(c)) for c in METRIC_COLUMNS]
            for name, tasks in result["models"].items() for task, values in tasks.items()]
    served = ", ".join(result["rows"][r] for r in ("model", "baseline") if r in result["rows"])
    logged = result["rows"].get("logged")
    return _section("Metrics on the eval split",
                    _table(["model", "task"] + [METRIC_HEADERS.get(c, c) for c in METRIC_COLUMNS], rows, 2),
                    _note(f"{served}: served networks (no bias tower)"
                          + (f"; {logged}: the training-time model (eq. 5) with its bias tower" if logged else "")
                          + ". efficiency = (AUC - 0.5) / (oracle AUC - 0.5); calibration = mean prediction / "
                            "mean label; cal@pos1 and events@pos1 at position 1."))


def _rela_impr(result: dict) -> str:
    rows = result["rows"]
    if "baseline" not in rows:
        return ""
    comparisons = [(rows["model"], "served networks", result.get("rela_impr_served", {}),
                    result.get("rela_impr_served_test", {}))]
    if "logged" in rows:  # else rela_impr is the served networks' comparison again
        comparisons.insert(0, (rows["logged"], "offline evaluation (eq. 5 on logged behaviour)",
                               result.get("rela_impr", {}), result.get("rela_impr_test", {})))
    tasks = list(dict.fromkeys(t for _, _, by_task, _ in comparisons for t in by_task))

    def cell(rela, test):
        p_value = (test or {}).get("p_value")
        return _percent(rela) + ("" if _missing(rela) or _missing(p_value) else f" (p {p_value:.3f})")

    body = [[_text(f"{name} over {rows['baseline']}"), _text(what)] + [cell(by_task.get(t), tests.get(t)) for t in tasks]
            for name, what, by_task, tests in comparisons]
    return _section("RelaImpr over the baseline", _table(["model", "comparison"] + tasks, body, 2),
                    _note("RelaImpr = (AUC(model) - 0.5) / (AUC(baseline) - 0.5) - 1; p: DeLong's paired test of "
                          "the two AUCs on the same eval impressions (two-sided)"))


def _ranking(result: dict) -> str:
    ranking = result.get("ranking") or {}
    if not ranking:
        return ""
    body = [[_text(name)] + [_number(values.get(c)) for c in RANKING_COLUMNS] for name, values in ranking.items()]
    return _section("Ranking judged on the truth (position-free probabilities)",
                    _table(["ranked by"] + list(RANKING_COLUMNS), body, 1))


def _evaluator(result: dict) -> str:
    """The Evaluator's own (TFMA) overall figures per task, and the blessing's failed bounds."""
    evaluator = result.get("evaluator") or {}
    body = [[_text(role), _text(task)] + [_number(values.get(c)) for c in EVALUATOR_COLUMNS]
            for role in ("candidate", "last_blessed")
            for task, values in evaluator.get(role, {}).get(evaluator_metrics.OVERALL, {}).items()]
    if not body:
        return ""
    failures = evaluator.get("failures") or []
    return _section("The Evaluator's blessing (TFMA)", _table(["model", "task"] + list(EVALUATOR_COLUMNS), body, 2),
                    _note("NDCG@k and min_label_position per request (request_id), the task's label as gain. "
                          + ("Not blessed: " + "; ".join(failures) if failures else "Every configured bound held.")))


def _slices(result: dict) -> str:
    body = [[_text(row), _text(name), _text(task)] + [_number(values.get(c)) for c in METRIC_COLUMNS]
            for row, by_slice in result.get("slices", {}).items() for name, tasks in by_slice.items()
            for task, values in tasks.items()]
    if not body:
        return ""
    return _section("Slices", _table(["model", "slice", "task"] + [METRIC_HEADERS.get(c, c) for c in METRIC_COLUMNS],
                                     body, 3))


def _abtest(result: Optional[dict]) -> str:
    """The A/B result as abtest.table prints it (DMT Table 6): arms, the logged order, B's lift."""
    if not result:
        return ""
    columns = list(abtest_lib.METRICS)
    arms = [(arm, result["arms"][arm]) for arm in abtest_lib.ARMS]
    arms.append((abtest_lib.LOGGING_POLICY, result["reference"][abtest_lib.LOGGING_POLICY]))
    body = [[_text(name), _text(arm.get("model", "the logged order"))]
            + [_percent(arm[c], sign="", digits=4) if c == "cvr" else _number(arm[c]) for c in columns]
            for name, arm in arms]
    lift_cells = []
    for c in columns:
        lift = result["lift"][c]
        low, high = lift["ci95"] or (None, None)
        significant = low is not None and (low > 0 or high < 0)
        lift_cells.append(f"{_percent(lift['relative'])}{'*' if significant else ''} "
                          f"[{_percent(low)}, {_percent(high)}]")
    body.append(["lift of B over A", "95 % interval"] + lift_cells)
    return _section("Simulated online A/B test",
                    _note(f"{result['requests']} requests, {result['impressions']} impressions; expected events per "
                          "request under the world's behaviour model"),
                    _table(["arm", "model"] + columns, body, 2),
                    _note(f"cvr = orders / clicks. Intervals: paired bootstrap over requests "
                          f"({result['bootstrap']['samples']} resamples); * the interval excludes zero"))


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes. A bare Figure (not pyplot's) renders with Agg and leaves no global
    state: nothing to switch or close."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _img(figure: Figure) -> str:
    """The figure as an <img> with an embedded PNG."""
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png(figure)).decode("ascii")}">'


def tasks_of(frames: Dict[str, pd.DataFrame]) -> List[str]:
    """The tasks with a prediction and a label in some frame, in column order."""
    return list(dict.fromkeys(c for frame in frames.values() for c in frame.columns if f"label_{c}" in frame))


def reliability(labels: np.ndarray, predictions: np.ndarray, bins: int = CALIBRATION_BINS):
    """(mean prediction, observed label rate) of `bins` equal-count bins of the prediction."""
    order = np.argsort(predictions, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, len(order))) if len(c)]
    return (np.array([predictions[c].mean() for c in chunks]), np.array([labels[c].mean() for c in chunks]))


def precision_recall(labels: np.ndarray, predictions: np.ndarray):
    """(recall, precision) of the precision-recall curve; None without positives (undefined)."""
    if labels.sum() == 0:
        return None
    precision, recall, _ = precision_recall_curve(labels, predictions)
    return recall, precision


def _known(frames: Dict[str, pd.DataFrame], task: str):
    """(row, labels, predictions) of each frame with the task's output and label."""
    for name, frame in frames.items():
        if task in frame and f"label_{task}" in frame:
            known = frame[[task, f"label_{task}"]].dropna()
            if len(known):
                yield name, known[f"label_{task}"].to_numpy(np.float64), known[task].to_numpy(np.float64)


def _draw_reliability(axes, task: str, frames: Dict[str, pd.DataFrame]) -> None:
    top = 0.0
    for name, labels, predictions in _known(frames, task):
        mean_prediction, rate = reliability(labels, predictions)
        axes.plot(mean_prediction, rate, marker="o", label=_plain(name))
        top = max(top, mean_prediction.max(), rate.max())
    top = top * 1.05 or 1.0  # a rare event's probabilities sit near 0: zoom to them
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    axes.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted probability", ylabel="observed rate",
             title=f"{_plain(task)}: reliability ({CALIBRATION_BINS} equal-count bins)")


def _draw_precision_recall(axes, task: str, frames: Dict[str, pd.DataFrame]) -> None:
    for name, labels, predictions in _known(frames, task):
        curve = precision_recall(labels, predictions)
        if curve is not None:
            axes.plot(*curve, label=f"{_plain(name)} (base rate {labels.mean():.4f})")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{_plain(task)}: precision-recall")


def task_figure(task: str, frames: Dict[str, pd.DataFrame], precision_recall_panel: bool = True) -> Figure:
    """The task's reliability diagram (each row a line), beside its precision-recall curves."""
    figure = Figure(figsize=(11 if precision_recall_panel else 5.5, 4.2))
    panels = figure.subplots(1, 2 if precision_recall_panel else 1, squeeze=False)[0]
    _draw_reliability(panels[0], task, frames)
    if precision_recall_panel:
        _draw_precision_recall(panels[1], task, frames)
    for axes in panels:
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure


def _plots(frames: Dict[str, pd.DataFrame]) -> str:
    tasks = tasks_of(frames)
    if not tasks:
        return ""
    return _section("Calibration and precision-recall on the eval split", *(_img(task_figure(t, frames)) for t in tasks))


def _matrix_figure(matrix: np.ndarray, cell: Sequence[float], title: str, **axes_settings):
    """(figure, axes) of `matrix` as a viridis image from 0 to its largest value (NaN cells blank),
    cells `cell` inches wide and high, with a colour bar."""
    figure = Figure(figsize=(1.6 + cell[0] * matrix.shape[1], 1.2 + cell[1] * matrix.shape[0]))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(np.nanmax(matrix, initial=0.0)), 1e-12),
                        aspect="auto")
    axes.set(title=title, **axes_settings)
    figure.colorbar(image, ax=axes)
    return figure, axes


def heat_map(gate: str, rows: Dict[str, Sequence[float]]) -> Figure:
    """Rows ("all", then each scenario) by experts, each cell annotated with its mean weight."""
    labels = list(rows)
    matrix = np.array([rows[label] for label in labels], dtype=np.float64)
    figure, axes = _matrix_figure(matrix, (0.75, 0.4), f"gate {_plain(gate)}: mean weight per expert",
                                  xticks=range(matrix.shape[1]), yticks=range(len(labels)),
                                  yticklabels=[_plain(label) for label in labels], xlabel="expert")
    for (i, j), weight in np.ndenumerate(matrix):
        # dark text on the bright cells of viridis, light on the dark ones
        colour = "black" if weight > 0.6 * matrix.max() else "white"
        axes.text(j, i, f"{weight:.2f}", ha="center", va="center", fontsize=8, color=colour)
    return figure


def _gates(gates: Optional[dict]) -> str:
    if not gates:
        return ""
    return _section("Gates of the mixture", _note("mean gate weight per expert over eval batches, overall and per "
                                                  "scenario (DMT Fig. 3; HMoE Fig. 3 for its <task>_scenario gates)"),
                    *(_img(heat_map(gate, rows)) for gate, rows in gates.items()))


def attention_map(sequence: str, values: Dict[str, List[List[float]]]) -> Figure:
    """Sample impressions (rows) by the sequence's elements, newest first (columns); padding blank."""
    weights = np.asarray(values["weights"], dtype=np.float64)
    shown = np.where(np.asarray(values["mask"]) > 0, weights, np.nan)
    return _matrix_figure(shown, (0.35, 0.35), f"decoder attention over {_plain(sequence)}",
                          xlabel="element (newest first)", ylabel="sample impression")[0]


def _attention(attention: Optional[dict]) -> str:
    if not attention:
        return ""
    return _section("Decoder attention", _note("the target item's attention (mean over the heads of the last decoder "
                                               "block) over each behaviour sequence, for sample eval impressions"),
                    *(_img(attention_map(sequence, values)) for sequence, values in attention.items()))


def render(result: dict, frames: Dict[str, pd.DataFrame], gates: Optional[dict] = None,
           attention: Optional[dict] = None) -> str:
    """The page's HTML: `result` as evaluate() returns it (with `ingest`, and `abtest` when the
    run made one), `frames` each row's scored eval split, `gates` the Trainer's gates.json and
    `attention` its attention.json (models/attention_summary.py)."""
    body = "".join([_facts(result), _metrics(result), _rela_impr(result), _evaluator(result), _ranking(result),
                    _slices(result), _abtest(result.get("abtest")), _plots(frames), _gates(gates),
                    _attention(attention)])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>funnel run report</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>funnel run report</h1>{body}"
            f"<script>{IMAGE_CHECK}</script></body></html>\n")


def write(path: str, result: dict, frames: Dict[str, pd.DataFrame], gates: Optional[dict] = None,
          attention: Optional[dict] = None) -> str:
    """Writes render()'s page to `path` (any filesystem tf.io.gfile writes, gs:// too); returns it."""
    with gfile.GFile(path, "w") as f:
        f.write(render(result, frames, gates, attention))
    return path
