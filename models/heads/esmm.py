"""ESMM (Ma et al., "Entire Space Multi-Task Model", SIGIR 2018; the ESM² paper's baseline):
two towers, y_ctr = P(click | impression) and y_cvr = P(buy | click), composed without
parameters:

    click = pCTR = y_ctr,   cvr = pCVR = y_cvr,   order = pCTCVR = y_ctr * y_cvr,

with losses on click and order over all impressions (pCVR is never fitted on clicked
impressions only, so it has no sample selection bias).
"""

from models import features as F
from models.heads.base import Heads
from models.registry import HEADS

CTR, CVR = "ctr", "cvr"


@HEADS.register("esmm")
class ESMMHeads(Heads):
    TASKS = (F.CLICK, F.ORDER)
    EXTRA_OUTPUTS = (CVR,)

    @property
    def towers(self):
        return [CTR, CVR]

    @property
    def bias_towers(self):
        return [CTR]

    def compose(self, y):
        return {F.CLICK: y[CTR], CVR: y[CVR], F.ORDER: y[CTR] * y[CVR]}
