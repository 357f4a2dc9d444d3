"""Tests of `funnel importance` (permutation feature importance per task, DTN eq. 2): a feature
the model ignores drops nothing, the one it relies on drops the AUC, sequences move as whole
rows, ranks, the written JSON / markdown / PNG / TensorBoard image, and the command on the
shared end-to-end run."""

import glob
import json
import os

import numpy as np
import pytest

from models import features as F
from models import rank_inputs
from pipeline import importance
from pipeline.cli import main

N = 400
SEQUENCE = F.sequence_name(F.SEQUENCE_CLICK)
FIELDS = tuple(F.sequence_feature(F.SEQUENCE_CLICK, f) for f in F.SEQUENCE_ELEMENT_FIELDS)
ITEM, AGE = F.sequence_feature(F.SEQUENCE_CLICK, F.ITEM_ID), F.sequence_feature(F.SEQUENCE_CLICK, F.SEQUENCE_AGE)


def _world(seed: int = 1):
    """Columns (`used`, `ignored`, a click sequence of 3 elements whose fields all encode the
    row they were made for) and labels: click follows `used`, order the sequence's ages."""
    rng = np.random.default_rng(seed)
    rows = np.arange(N)
    columns = {"used": rng.normal(size=N), "ignored": rng.normal(size=N)}
    ages = rng.integers(0, 1000, size=(N, 3))
    columns[AGE] = ages
    for name in FIELDS:
        if name != AGE:  # "row:age" strings: a field's row stays aligned with the ages' row
            columns[name] = np.array([[f"{r}:{a}" for a in ages[r]] for r in rows], dtype=object)
    labels = {F.CLICK: (columns["used"] + 0.3 * rng.normal(size=N) > 0).astype(np.int64),
              F.ORDER: (ages.mean(axis=1) > 500).astype(np.int64)}
    return columns, labels


class _Scorer:
    """A fake model: click from `used`, order from the sequence's mean age; checks on every call
    that each sequence row is whole (all fields from one original row)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, columns):
        self.calls += 1
        for name in FIELDS:
            if name != AGE:
                made_for = np.array([[int(v.split(":")[1]) for v in row] for row in columns[name]])
                assert np.array_equal(made_for, columns[AGE]), f"{name} is no longer aligned with the ages"
        return {F.CLICK: 1 / (1 + np.exp(-columns["used"])),
                F.ORDER: columns[AGE].mean(axis=1) / 1000.0, "score": columns["used"]}


def _groups(columns):
    return importance.feature_groups(list(columns))


def test_feature_groups_take_each_input_alone_and_each_sequence_whole():
    groups = importance.feature_groups(rank_inputs.input_signature())
    for s in F.SEQUENCES:
        assert groups[F.sequence_name(s)] == tuple(F.sequence_feature(s, f) for f in F.SEQUENCE_ELEMENT_FIELDS)
    singles = [name for name in groups if name not in {F.sequence_name(s) for s in F.SEQUENCES}]
    assert all(groups[name] == (name,) for name in singles)
    assert set(singles) == set(rank_inputs.input_signature()) - set(F.SEQUENCE_FEATURES)
    assert {F.SCENARIO, F.ITEM_ID, F.ITEM_PRICE, *F.USER_DENSE_FEATURES} <= set(singles)


def test_a_permuted_sequence_moves_whole_rows():
    columns, _ = _world()
    permutation = np.random.default_rng(0).permutation(N)
    moved = importance.permuted(columns, _groups(columns)[SEQUENCE], permutation)
    for name in FIELDS:
        assert np.array_equal(moved[name], columns[name][permutation])
    assert moved["used"] is columns["used"] and moved["ignored"] is columns["ignored"]


def test_an_ignored_feature_drops_nothing_and_the_used_ones_do():
    columns, labels = _world()
    scorer = _Scorer()
    result = importance.permutation_importance(columns, labels, scorer, _groups(columns), seed=0)
    click, order = result["tasks"][F.CLICK], result["tasks"][F.ORDER]
    assert set(result["tasks"]) == {F.CLICK, F.ORDER} and set(click) == {"used", "ignored", SEQUENCE}
    assert click["ignored"]["auc_drop"] == 0.0 and order["ignored"]["auc_drop"] == 0.0
    assert click["used"]["auc_drop"] > 0.2 and order[SEQUENCE]["auc_drop"] > 0.2
    assert click[SEQUENCE]["auc_drop"] == 0.0 and order["used"]["auc_drop"] == 0.0
    # rank 1 = the largest drop; ties share the best rank
    assert (click["used"]["rank"], click["ignored"]["rank"], click[SEQUENCE]["rank"]) == (1, 2, 2)
    assert (order[SEQUENCE]["rank"], order["used"]["rank"], order["ignored"]["rank"]) == (1, 2, 2)
    assert result["base_auc"][F.CLICK] == pytest.approx(click["used"]["auc_drop"] + _auc_permuted(columns, labels))
    assert result["examples"] == N and result["seed"] == 0 and result["repeats"] == 1
    assert scorer.calls == 1 + 3  # the base, then one permutation per feature


def _auc_permuted(columns, labels):
    from models.metrics import auc

    permutation = np.random.default_rng(0).permutation(N)  # the documented permutation of seed 0
    return auc(labels[F.CLICK], 1 / (1 + np.exp(-columns["used"][permutation])))


def test_the_seed_fixes_the_permutations_and_repeats_average_them():
    columns, labels = _world()
    groups = _groups(columns)
    first = importance.permutation_importance(columns, labels, _Scorer(), groups, seed=3)
    assert importance.permutation_importance(columns, labels, _Scorer(), groups, seed=3) == first
    other = importance.permutation_importance(columns, labels, _Scorer(), groups, seed=4)
    assert other["tasks"][F.CLICK]["used"]["auc_drop"] != first["tasks"][F.CLICK]["used"]["auc_drop"]
    scorer = _Scorer()
    averaged = importance.permutation_importance(columns, labels, scorer, groups, seed=3, repeats=2)
    assert scorer.calls == 1 + 3 * 2
    assert averaged["tasks"][F.CLICK]["used"]["auc_drop"] != first["tasks"][F.CLICK]["used"]["auc_drop"]
    with pytest.raises(importance.ImportanceError):
        importance.permutation_importance(columns, labels, scorer, groups, repeats=0)


def test_a_task_without_positives_has_no_drop_and_no_rank():
    columns, labels = _world()
    labels[F.ORDER] = np.zeros(N, np.int64)
    result = importance.permutation_importance(columns, labels, _Scorer(), _groups(columns))
    assert result["base_auc"][F.ORDER] is None
    assert all(v == {"auc_drop": None, "rank": None} for v in result["tasks"][F.ORDER].values())
    assert "| - | -" in importance.markdown(result)


def test_written_json_markdown_png_and_tensorboard_image(tmp_path):
    import tensorflow as tf

    columns, labels = _world()
    result = importance.permutation_importance(columns, labels, _Scorer(), _groups(columns))
    result["command"] = "funnel importance --model m --logs l"
    paths = importance.write(result, str(tmp_path))
    written = json.loads((tmp_path / importance.JSON_FILE).read_text())
    for task, table in written["tasks"].items():
        for feature, entry in table.items():
            assert set(entry) == {"auc_drop", "rank"}
            assert isinstance(entry["auc_drop"], float) and isinstance(entry["rank"], int)
    assert written["tasks"] == result["tasks"]
    text = (tmp_path / importance.MARKDOWN_FILE).read_text()
    assert "`funnel importance --model m --logs l`" in text and "| click AUC drop | click rank |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| feature")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["used", "ignored", SEQUENCE]  # by click rank
    image = tf.io.decode_png((tmp_path / importance.PNG_FILE).read_bytes())
    assert image.shape[0] > 200 and image.shape[1] > 200
    tags = set()
    for path in glob.glob(os.path.join(paths["tensorboard"], "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    assert {importance.IMAGE_TAG, importance.TABLE_TAG} <= tags
    assert importance.divergence_tasks(result) == (F.CLICK, F.ORDER)
    assert "used" in importance.table(result).splitlines()[1]


@pytest.mark.e2e
def test_importance_of_the_e2e_run(e2e_run, pushed_model, tmp_path, capsys):
    """The command on the shared run's pushed model and eval split: every input and sequence
    ranked per task, the unpermuted `rank` scores equal to `serving_default`'s."""
    root, _ = e2e_run
    out = tmp_path / "importance"
    assert main(["importance", "--model", pushed_model, "--logs", str(root / "logs"), "--work", str(root / "work"),
                 "--out", str(out), "--features", f"{F.ITEM_PRICE},{F.SCENARIO},click_sequence"]) == 0
    printed = capsys.readouterr().out
    assert "[2/3] click_sequence" in printed and "[3/3] item_price" in printed and "written:" in printed
    result = json.loads((out / importance.JSON_FILE).read_text())
    assert set(result["tasks"]) == {F.CLICK, F.ORDER}
    for table in result["tasks"].values():
        assert set(table) == {F.ITEM_PRICE, F.SCENARIO, "click_sequence"}
        assert sorted(e["rank"] for e in table.values())[0] == 1
    assert result["examples"] > 100 and result["command"].startswith("funnel importance --model")
    assert (out / importance.PNG_FILE).exists() and (out / importance.MARKDOWN_FILE).exists()
