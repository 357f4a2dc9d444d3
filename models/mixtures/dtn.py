"""DTN: Deep Multiple Task-specific Feature Interactions Network (Bi et al., JD, "Deep Multiple
Task-specific Feature Interactions Network for Multi-Task Recommendation", sections "Multiple
diversified Feature Interactions" and "Task-Sensitive Network", eq. 3-7).

- MFI modules (eq. 3): one shared, M_S(x), and one per task (tower), M_t(x); each holds
  `modules_per_interaction` feature-interaction modules (FIMs) of every method in
  `interactions` (registered experts: gdcn, masknet, memonet, mlp), each [B, interaction_units].
- Per task t two gating networks, each a single linear layer with softmax on x:
  S_O = sum_i g_O^i A_O^i over A_O = the other tasks' FIMs and the shared ones (eq. 4),
  S_V = sum_i g_V^i M_t^i over the task's own FIMs (eq. 5); C_t = concat[S_O, S_V].
- Task-Sensitive Network: the towers run in order (click before order; ctr before cvr); in a
  later task's A_O, an earlier task's FIMs are multiplied by that task's predicted
  probability, A_O = [pCTR · M_T(x), M_S(x)] for CVR (the paper also applies it to ATC). The
  probability is sigmoid of the earlier tower's bias-free logit u (funnel's bias tower adds
  its logit in the heads, after the mixture).
- y_t = t_t(C_t) (eq. 6-7): a ReLU tower MLP then the logit.

DTN-trim: `trimmed` names the FIMs left out (e.g. `order_gdcn_0`); `dtn_trim.py` chooses them
from the mean gate weights of a trained DTN (the trainer does it when `trim_threshold` > 0).
"""

from typing import Dict, List, Sequence

import tensorflow as tf

from models.experts import base as expert_base
from models.mixtures.base import Mixture, mixture_of_experts
from models.mlp import mlp
from models.registry import EXPERTS, MIXTURES
import models.experts  # noqa: F401  (registers the experts)

SHARED = "shared"
DEFAULT_INTERACTIONS = ({"type": "gdcn"}, {"type": "masknet"}, {"type": "memonet"})


def own_gate(tower: str) -> str:
    return f"{tower}_own"


def others_gate(tower: str) -> str:
    return f"{tower}_others"


@MIXTURES.register("dtn")
class DTN(Mixture):
    NESTED_SECTIONS = {"interactions": EXPERTS}  # checked with the config (models/registry.py)

    def __init__(self, towers: Sequence[str], num_scenarios: int = 0,
                 interactions: Sequence[dict] = DEFAULT_INTERACTIONS, modules_per_interaction: int = 1,
                 interaction_units: int = 128, tower_units: Sequence[int] = (64,), task_sensitive: bool = True,
                 trim_threshold: float = 0.0, trimmed: Sequence[str] = (), **kwargs):
        super().__init__(towers, num_scenarios, **kwargs)
        if not interactions or int(modules_per_interaction) < 1 or int(interaction_units) < 1:
            raise ValueError("dtn needs interactions, modules_per_interaction >= 1 and interaction_units >= 1")
        if not 0.0 <= float(trim_threshold) < 1.0:
            raise ValueError(f"dtn trim_threshold {trim_threshold}: a gate weight in [0, 1)")
        self.interactions = [dict(section) for section in interactions]
        for section in self.interactions:
            EXPERTS.validate(section)
        self.modules_per_interaction = int(modules_per_interaction)
        self.interaction_units = int(interaction_units)
        self.tower_units = [int(u) for u in tower_units]
        self.task_sensitive = bool(task_sensitive)
        self.trim_threshold = float(trim_threshold)
        self.trimmed = [str(name) for name in trimmed]
        every = self.module_names()
        unknown = sorted(set(self.trimmed) - {n for names in every.values() for n in names})
        if unknown:
            raise ValueError(f"dtn trimmed: unknown modules {unknown}")
        # MFI module -> its FIM names, without the trimmed ones
        self.members = {m: [n for n in names if n not in self.trimmed] for m, names in every.items()}
        kinds = {n: section for names in every.values() for n, section in zip(names, self._sections())}
        self.fims = {n: EXPERTS.build(kinds[n], output_units=self.interaction_units, name=n)
                     for names in self.members.values() for n in names}
        self.gate_members: Dict[str, List[str]] = {}
        self.gates = {}
        for t in self.towers:
            for gate, names in ((others_gate(t), self.others(t)), (own_gate(t), self.members[t])):
                if names:  # a gate over no FIM (all trimmed) is left out
                    self.gate_members[gate] = names
                    self.gates[gate] = mlp((), gate, output_units=len(names))  # GN: linear + softmax
            if not any(g in self.gates for g in (others_gate(t), own_gate(t))):
                raise ValueError(f"dtn: every module tower {t!r} reads is trimmed")
        self.tower_nets = {t: mlp(self.tower_units, f"tower_{t}", output_units=1) for t in self.towers}

    @property
    def uses_fields(self):
        return any(expert_base.reads_fields(s) for s in self.interactions)

    def _sections(self):
        """The interaction section of each FIM of a module, in the order of `module_names`."""
        return [s for s in self.interactions for _ in range(self.modules_per_interaction)]

    def module_names(self) -> Dict[str, List[str]]:
        """MFI module -> its FIMs' names `<module>_<type>_<k>`, k counting that type's FIMs."""
        names = {}
        for module in [SHARED] + self.towers:
            counts: Dict[str, int] = {}
            names[module] = []
            for section in self._sections():
                k = counts[section["type"]] = counts.get(section["type"], -1) + 1
                names[module].append(f"{module}_{section['type']}_{k}")
        return names

    def others(self, tower: str) -> List[str]:
        """A_O's FIMs for `tower`: the other tasks' (in tower order), then the shared ones."""
        return [n for t in self.towers if t != tower for n in self.members[t]] + self.members[SHARED]

    def mix(self, x, scenario, training, fields=None):
        inputs = expert_base.expert_inputs(x, fields)
        out = {n: fim(inputs, training=training) for n, fim in self.fims.items()}  # [B, d] each
        logits, gates, probability = {}, {}, {}
        for k, t in enumerate(self.towers):
            parts = []
            if others_gate(t) in self.gates:
                earlier = set(self.towers[:k]) if self.task_sensitive else set()
                a_o = [out[n] * probability[o] if o in earlier else out[n]  # TSN: p_o · M_o(x)
                       for o in self.towers if o != t for n in self.members[o]]
                a_o += [out[n] for n in self.members[SHARED]]
                s_o, gates[others_gate(t)] = mixture_of_experts(self.gates[others_gate(t)](x), tf.stack(a_o, 1))
                parts.append(s_o)                                                         # eq. 4
            if own_gate(t) in self.gates:
                s_v, gates[own_gate(t)] = mixture_of_experts(
                    self.gates[own_gate(t)](x), tf.stack([out[n] for n in self.members[t]], 1))
                parts.append(s_v)                                                         # eq. 5
            logits[t] = self.tower_nets[t](tf.concat(parts, axis=-1), training=training)  # eq. 6-7
            probability[t] = tf.sigmoid(logits[t])
        return logits, gates

    def params(self):
        return {"interactions": [dict(s) for s in self.interactions],
                "modules_per_interaction": self.modules_per_interaction,
                "interaction_units": self.interaction_units, "tower_units": list(self.tower_units),
                "task_sensitive": self.task_sensitive, "trim_threshold": self.trim_threshold,
                "trimmed": list(self.trimmed)}
