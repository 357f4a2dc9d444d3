import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from models import features as F
from pipeline import ablate_scoring


@pytest.mark.parametrize("kind,weights", [("product", {"click": 0.3, "order": 0.7}),
                                          ("weighted", {"click": 1.0, "order": 30.0})])
def test_fused_score_is_what_the_fusion_layers_serve(kind, weights):
    from models.registry import FUSIONS

    scored = pd.DataFrame({"click": [0.05, 0.2, 0.01], "order": [0.002, 0.001, 0.0005]})
    layer = FUSIONS.get(kind)(outputs=["click", "order"], tasks=["click", "order"], weights=weights)
    served = layer({k: tf.constant(v, tf.float32) for k, v in scored.items()}).numpy()
    fused = ablate_scoring.fused_score(scored, kind, weights)
    # the product layer serves exp(sum w log p); the ablation ranks by its logarithm
    np.testing.assert_allclose(np.exp(fused) if kind == "product" else fused, served, rtol=1e-5)


def test_pcvr_is_the_cvr_head_when_served_else_pctcvr_over_pctr():
    esmm = pd.DataFrame({F.CLICK: [0.5, 0.1], F.ORDER: [0.05, 0.02], "cvr": [0.3, 0.4]})
    np.testing.assert_allclose(ablate_scoring.cvr_of(esmm), [0.3, 0.4])
    independent = esmm.drop(columns="cvr")
    np.testing.assert_allclose(ablate_scoring.cvr_of(independent), [0.1, 0.2])
    # a click probability of 0 gives a finite pCVR, not a division error
    assert np.isfinite(ablate_scoring.cvr_of(pd.DataFrame({F.CLICK: [0.0], F.ORDER: [0.0]}))).all()
    assert ablate_scoring.cvr_of(independent[[F.CLICK]]) is None
