"""ESM² (Wen et al., "Entire Space Multi-Task Modeling via Post-Click Behavior Decomposition
for Conversion Rate Prediction", SIGIR 2020, section 3.2, eq. 1-4, and the loss eq. 11).

Impression -> click -> DAction (cart or wish) / OAction (any other) -> purchase. Four towers:

    y1 = P(click | impression)         (eq. 1)
    y2 = P(DAction | click)
    y3 = P(buy | DAction)
    y4 = P(buy | OAction)

composed without parameters:

    click  = pCTR   = y1
    daction = pCTAVR = y1 * y2                         (eq. 2)
    cvr    = pCVR   = y2 * y3 + (1 - y2) * y4           (eq. 3)
    order  = pCTCVR = y1 * pCVR                         (eq. 4)

Losses (eq. 11): w_ctr BCE(click) + w_ctavr BCE(daction) + w_ctcvr BCE(order), all over every
impression; the weights are the model's `loss_weights` (1 each in the paper). The `daction`
label is the ingest's cart-or-wish label.
"""

from models import features as F
from models.heads.base import Heads
from models.registry import HEADS

CTR = "ctr"
DACTION_GIVEN_CLICK = "daction_given_click"
BUY_GIVEN_DACTION = "buy_given_daction"
BUY_GIVEN_OACTION = "buy_given_oaction"
CVR = "cvr"


@HEADS.register("esm2")
class ESM2Heads(Heads):
    TASKS = (F.CLICK, F.DACTION, F.ORDER)
    EXTRA_OUTPUTS = (CVR,)

    @property
    def towers(self):
        return [CTR, DACTION_GIVEN_CLICK, BUY_GIVEN_DACTION, BUY_GIVEN_OACTION]

    @property
    def bias_towers(self):
        return [CTR]

    def compose(self, y):
        y1, y2, y3, y4 = (y[t] for t in self.towers)
        cvr = y2 * y3 + (1.0 - y2) * y4
        return {F.CLICK: y1, F.DACTION: y1 * y2, F.ORDER: y1 * cvr, CVR: cvr}
