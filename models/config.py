"""Model configuration: one dataclass, built from the `model:` section of a YAML config.

Defaults are the DMT paper's (Gu et al., "Deep Multifaceted Transformers for Multi-objective
Ranking in Large-Scale E-commerce Recommender Systems", CIKM 2020) where it states them, and
the authors' released code (github.com/guyulongcs/CIKM2020_DMT, conf/settings/dmt.conf)
where it does not:

- item representation e_i (4.1.1) = concat of item, category, brand, shop embeddings.
  The authors' code uses sku 32 + cid2 8 + cid3 8 + brand 16 + shop 16 = 80; our catalog has
  one category level, so category gets 16 and the width stays d = 80. No projection: the
  Transformer width d_model is the concatenated width (transformer_is_trans_input_by_mlp=false).
- d_k = d_v = d / h (4.2.2) with h = 4 heads; the FFN inner width d_f (eq. 2) is not given in
  the paper; the code uses d_ff = 320 = 4 * d, so `ffn_dim: null` means 4 * d.
- 1 encoder block, 1 decoder block, dropout 0.1, learned positional embedding (Table 3).
- recency: an embedding of the element's log2 age bucket is added to the element embedding
  (the JD talk's "time-difference (recency) encoding alongside positional encoding"; the
  authors' code has the same idea as position_encoding_method=time_add).
- MMoE (eq. 3): 4 experts; the gate NN_G^k is linear + softmax (as in the code).
- bias tower (eq. 4): neighboring bias (Table 5's best), K = 6 neighbours.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from models import features as F
from models import preprocessing as P

POSITIONAL_OPTIONS = ("none", "sincos", "learned")  # Table 3: no / pos_sincos / pos_learn
# Bias tower inputs per option (Table 5, + all three): the item's position, its page, and the
# categories of the item and its K neighbours.
BIAS_PARTS = {"position_index": ("position",), "position_page": ("page",), "neighboring": ("neighbors",),
              "all": ("position", "page", "neighbors")}
BIAS_OPTIONS = ("none",) + tuple(BIAS_PARTS)
MODEL_TYPES = ("dmt", "dnn_base")
DEFAULT_EMBEDDING_DIMS = {F.ITEM_ID: 32, F.CATEGORY_ID: 16, F.BRAND_ID: 16, F.SHOP_ID: 16}


def _default_sequences() -> Dict[str, int]:
    return {name: max_length for name, (max_length, _) in F.SEQUENCES.items()}


@dataclass
class ModelConfig:
    model_type: str = "dmt"  # "dmt" or "dnn_base" (the paper's DNN(Base), 5.2)
    # --- objectives (4.5): eq. 5 loss weights lambda_k, eq. 6 fusion weights w_k (default 1.0)
    tasks: List[str] = field(default_factory=lambda: [F.CLICK, F.ORDER])
    loss_weights: Dict[str, float] = field(default_factory=dict)
    fusion_weights: Dict[str, float] = field(default_factory=dict)
    # --- embeddings (4.1.1)
    embedding_dims: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EMBEDDING_DIMS))
    use_target_embedding: bool = True  # concat e_target into the MMoE input (authors' code)
    # --- Deep Multifaceted Transformers (4.2): sequence name -> max length
    sequences: Dict[str, int] = field(default_factory=_default_sequences)
    num_heads: int = 4
    encoder_blocks: int = 1
    decoder_blocks: int = 1
    ffn_dim: Optional[int] = None  # None: 4 * d
    dropout: float = 0.1
    positional: str = "learned"
    recency: bool = True
    # --- MMoE (4.3, eq. 3)
    num_experts: int = 4
    expert_units: List[int] = field(default_factory=lambda: [256, 128])
    gate_units: List[int] = field(default_factory=list)  # hidden layers of NN_G^k ([] = linear)
    tower_units: List[int] = field(default_factory=lambda: [64])  # hidden layers of NN_U^k
    # --- bias deep neural network (4.4, eq. 4)
    bias_features: str = "neighboring"
    bias_units: List[int] = field(default_factory=lambda: [64, 32])
    bias_embedding_dim: int = 8
    bias_dropout: float = 0.0
    # --- dense features (4.1.2) and their quantile buckets
    use_dense_features: bool = True
    bucketized_features: List[str] = field(
        default_factory=lambda: list(P.DEFAULT_TRANSFORM_CONFIG["bucketized_features"]))
    num_buckets: int = P.DEFAULT_TRANSFORM_CONFIG["num_buckets"]
    bucket_embedding_dim: int = 8
    # --- optional context
    use_scenario: bool = False
    scenario_embedding_dim: int = 8
    # --- DNN(Base): shared MLP over the target embedding and dense features
    baseline_units: List[int] = field(default_factory=lambda: [256, 128, 64])

    def __post_init__(self):
        self.embedding_dims = {**DEFAULT_EMBEDDING_DIMS, **dict(self.embedding_dims)}
        if isinstance(self.sequences, (list, tuple)):
            self.sequences = {s: F.SEQUENCES[s][0] if s in F.SEQUENCES else 0 for s in self.sequences}
        self.sequences = {str(k): int(v) for k, v in self.sequences.items()}
        self.tasks = list(self.tasks)
        self.loss_weights = self._per_task(self.loss_weights, "loss_weights")
        self.fusion_weights = self._per_task(self.fusion_weights, "fusion_weights")
        self.validate()

    def _per_task(self, weights: Union[Mapping[str, float], List[float], None], what: str):
        if isinstance(weights, (list, tuple)):
            if len(weights) != len(self.tasks):
                raise ValueError(f"{what}: {len(weights)} values for {len(self.tasks)} tasks")
            weights = dict(zip(self.tasks, weights))
        weights = dict(weights or {})
        unknown = set(weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"{what} for tasks not in `tasks`: {sorted(unknown)}")
        return {t: float(weights.get(t, 1.0)) for t in self.tasks}

    def validate(self) -> None:
        def check(ok: bool, message: str):
            if not ok:
                raise ValueError(f"model config: {message}")

        check(self.model_type in MODEL_TYPES, f"model_type must be one of {MODEL_TYPES}")
        check(len(self.tasks) > 0 and len(set(self.tasks)) == len(self.tasks), "tasks: non-empty, unique")
        check(set(self.tasks) <= set(F.LABELS), f"tasks must be among {F.LABELS}")
        check(set(self.embedding_dims) == set(F.ITEM_ID_FEATURES), f"embedding_dims keys: {F.ITEM_ID_FEATURES}")
        check(all(v > 0 for v in self.embedding_dims.values()), "embedding dims must be positive")
        check(set(self.sequences) <= set(F.SEQUENCES), f"sequences must be among {tuple(F.SEQUENCES)}")
        check(all(v > 0 for v in self.sequences.values()), "sequence max lengths must be positive")
        check(self.model_type != "dmt" or len(self.sequences) > 0, "dmt needs at least one sequence")
        check(self.num_heads > 0 and self.d_model % self.num_heads == 0,
              f"d = {self.d_model} must be divisible by num_heads = {self.num_heads} (d_k = d / h)")
        check(self.encoder_blocks >= 0 and self.decoder_blocks >= 1, "encoder_blocks >= 0, decoder_blocks >= 1")
        check(0.0 <= self.dropout < 1.0 and 0.0 <= self.bias_dropout < 1.0, "dropout in [0, 1)")
        check(self.positional in POSITIONAL_OPTIONS, f"positional must be one of {POSITIONAL_OPTIONS}")
        check(self.bias_features in BIAS_OPTIONS, f"bias_features must be one of {BIAS_OPTIONS}")
        check(self.num_experts > 0 and len(self.expert_units) > 0, "MMoE needs experts with units")
        check(set(self.bucketized_features) <= set(F.DENSE_FEATURES), "bucketized_features must be dense features")
        check(all(w > 0 for w in self.fusion_weights.values()), "fusion weights must be positive")
        check(all(w >= 0 for w in self.loss_weights.values()), "loss weights must be non-negative")

    @property
    def d_model(self) -> int:
        """Width d of e_i (4.1.1) and of the Transformer (4.2.2)."""
        return sum(self.embedding_dims[f] for f in F.ITEM_ID_FEATURES)

    @property
    def ffn_units(self) -> int:
        """d_f of eq. 2."""
        return int(self.ffn_dim) if self.ffn_dim else 4 * self.d_model

    @property
    def uses_buckets(self) -> bool:
        return self.use_dense_features and bool(self.bucketized_features)

    @classmethod
    def from_dict(cls, section: Optional[Mapping[str, Any]] = None,
                  transform_config: Optional[Mapping[str, Any]] = None) -> "ModelConfig":
        """From a YAML `model:` section; unknown keys are an error.

        `transform_config` (preprocessing.transform_config(...)) supplies `bucketized_features`
        and `num_buckets` unless the section sets them, so the model matches the Transform.
        """
        section = dict(section or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(section) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}; known: {sorted(names)}")
        if transform_config is not None:
            section.setdefault("bucketized_features", list(transform_config["bucketized_features"]))
            section.setdefault("num_buckets", int(transform_config["num_buckets"]))
        return cls(**section)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
