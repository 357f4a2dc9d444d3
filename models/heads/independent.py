"""Independent sigmoid heads (DMT eq. 5-6): y_k = sigmoid(u_k + y_b) per task."""

from models.heads.base import Heads
from models.registry import HEADS


@HEADS.register("independent")
class IndependentHeads(Heads):
    @property
    def towers(self):
        return list(self.tasks)

    @property
    def bias_towers(self):
        return list(self.tasks)

    def compose(self, y):
        return {t: y[t] for t in self.tasks}
