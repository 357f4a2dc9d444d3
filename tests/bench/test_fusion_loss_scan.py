import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from bench import fusion_loss_scan as scan
from models import features as F
from models.fusion_network import list_loss_terms


def _requests(rows_per_request, count):
    return np.repeat(np.arange(count), rows_per_request)


def test_chunks_keep_requests_whole_and_cover_every_row():
    requests = np.random.default_rng(0).permutation(np.repeat(np.arange(50), 7))
    chunks = scan.request_chunks(requests, rows=20)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(requests)))
    assert all(len(c) <= 20 for c in chunks)
    owners = {}
    for i, chunk in enumerate(chunks):
        for r in set(requests[chunk].tolist()):
            assert owners.setdefault(r, i) == i  # a request in one chunk only
    # a request longer than a chunk is a chunk of its own
    assert [len(c) for c in scan.request_chunks(np.array([0] * 30 + [1] * 3), rows=20)] == [30, 3]


def test_row_gains_and_anchor_weight_follow_the_fusion_loss():
    scored = pd.DataFrame({"label_click": [1, 1, 0, 1, 0], "label_order": [1, 0, 0, 0, 0]})
    gains = scan.row_gains(scored, (1.0, 10.0))
    assert gains.tolist() == [10.0, 1.0, 0.0, 1.0, 0.0]
    # the anchors' weight the scan sums over chunks: request 0: rows 0-2 (anchors 10 and 1);
    # request 1: rows 3-4 (anchor 1); two rows of equal gain: no anchor
    def anchor_weight(gains, requests):
        zeros = tf.zeros([len(gains), 2])
        return float(list_loss_terms(zeros, zeros, tf.constant(gains, tf.float32), tf.constant(requests))[1])

    assert anchor_weight(gains, np.array([0, 0, 0, 1, 1])) == 12.0
    assert anchor_weight(np.array([1.0, 1.0]), np.array([0, 0])) == 0.0


def test_the_scan_prefers_the_output_that_ranks_the_labels():
    rng = np.random.default_rng(1)
    n_requests, per = 40, 10
    clicked = np.zeros(n_requests * per, bool)
    clicked[np.arange(n_requests) * per + rng.integers(0, per, n_requests)] = True
    scored = pd.DataFrame({
        F.USER_ID: _requests(per, n_requests), F.REQUEST_ID: 0,
        # the click output ranks each request's click first; the order output is noise
        F.CLICK: np.where(clicked, 0.5, 0.05), F.ORDER: rng.uniform(0.01, 0.1, n_requests * per),
        "label_click": clicked.astype(int), "label_order": 0})
    losses = scan.scan_loss(scored, click_weights=(0.0, 0.5, 1.0), gains_list=((1.0, 10.0),))
    loss = losses["click=1 order=10"]
    assert loss[2] < loss[1] < loss[0]
    # the scan is list_loss: with the click output alone each anchor's list is itself (0.5)
    # against 9 rows at 0.05, scores 2 log p
    expected = -np.log(0.5 ** 2 / (0.5 ** 2 + 9 * 0.05 ** 2))
    assert loss[2] == pytest.approx(expected, rel=1e-5)
