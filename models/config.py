"""Model configuration: one dataclass, built from the `model:` section of a YAML config.

A network is composed of registered parts (models/model.py `build_model`), each chosen by a
nested section with a `type` and that part's arguments (models/registry.py):

    model:
      preset: dmt                  # models/presets.yaml; keys given beside it override it
      sequence_encoder: {type: transformer, num_heads: 4}   # or din; sequences: {} for none
      mixture: {type: immoe, num_experts: 5}                # shared_bottom, mmoe, ple, hmoe, immoe, dtn
      heads: {type: independent}                            # esmm, esm2
      fusion: {type: product, weights: {click: 1, order: 1}}   # or weighted (eq. 6), network
      bias_features: all, bias_output_dropout: 0.8          # the bias tower (training only)
      calibration: {type: reference, position: 1, page: 1}  # what the served probabilities mean

A nested section given with the same `type` as the preset's (or none) is merged into it; one
with another `type` replaces it. Parts' arguments not given take the part's defaults.

The defaults (= the `dmt` preset) are the DMT paper's (Gu et al., "Deep Multifaceted
Transformers for Multi-objective Ranking in Large-Scale E-commerce Recommender Systems", CIKM
2020) where it states them, and the authors' released code (github.com/guyulongcs/CIKM2020_DMT,
conf/settings/dmt.conf) where it does not:

- item representation e_i (4.1.1) = concat of item, category, brand, shop embeddings.
  The authors' code uses sku 32 + cid2 8 + cid3 8 + brand 16 + shop 16 = 80; our catalog has
  one category level, so category gets 16 and the width stays d = 80. No projection: the
  Transformer width d_model is the concatenated width (transformer_is_trans_input_by_mlp=false).
- d_k = d_v = d / h (4.2.2) with h = 4 heads; the FFN inner width d_f (eq. 2) is not given in
  the paper; the code uses d_ff = 320 = 4 * d, so `ffn_dim: null` means 4 * d.
- 1 encoder block, 1 decoder block, dropout 0.1 (the `dmt-paper` preset also has Table 3's
  learned positional embedding; `dmt` has none, below).
- recency: an embedding of the element's log2 age bucket is added to the element embedding
  (the JD talk's "time-difference (recency) encoding alongside positional encoding"; the
  authors' code has the same idea as position_encoding_method=time_add).

Where funnel's default differs from the paper (the `dmt-paper` preset has the paper's and the
released code's settings; README "Measured on the default world" gives both runs). On the
default world `dmt-paper` ranks orders better (served order AUC 0.890 against 0.859) and clicks
about as well (0.676 against 0.674), but its class weights make its probabilities ~3.5x (click)
and ~30x (order) the true ones at position 1, and its training-time (logged-click) AUC drops
from 0.745 to 0.676; funnel keeps calibrated defaults, and which of the paper's settings brings
the order gain is left to the ablation suites (issue 10):

- the mixture is IMMoE (Li et al., CIKM 2020, 3.2, eq. 4-5), not DMT's MMoE (eq. 3): per task
  an MMoE gate (one 64 hidden layer) over 5 shared experts of 128, then one tower (64-32) per
  scenario, each example read from its own scenario's tower. Over three seeds on the default
  world it led MMoE (4 experts 256-128, linear gates, towers 64) on every truth figure: click
  efficiency 0.816 against 0.804, click NDCG@10 0.899 against 0.893, the score's purchase
  NDCG@10 0.841 against 0.829 (bench/results/ablations/mixture-seeds.md). With one scenario
  (a log without the field) it is that MMoE with its own sizes; the `mmoe` preset is DMT's;
- bias tower MLP 64-32 without dropout (code: 32-16, dropout 0.5) on Table 5's `all` with
  observation dropout (below);
- no class weights (code: 1 / 15 / 400 for non-click / click / order examples, which makes
  the served probabilities uncalibrated), no L2 on embeddings (code: l2_emb_lambda 0.01);
- batch 512 (code: 2048); the schedule is the code's, 2 epochs at 1e-3 then 1e-4 (the
  `trainer:` section), switched here at the epoch boundary where the code switches after 300M
  examples;
- calibration `reference`: the served probabilities are the bias-free network's at a
  reference context (position 1, page 1), not the paper's eq. 6 sigmoid(u_k) (`none`);
- no positional embedding (`positional: none`), where Table 3's best is the learned one: with
  the recency embedding on, over five paired trainings on the default world no positions led
  learned ones on served click AUC (by 0.0003-0.0054) and click efficiency (0.0005-0.0183)
  every time and was level on orders (bench/results/ablations/positional-recency-seeds.md; the
  sequences are in time order and recency already says how old each behaviour is).
"""

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from models import din, fusion, fusion_network, heads, mixtures, transformer  # noqa: F401  (part registration)
from models import features as F
from models import preprocessing as P
from models.heads.base import BIAS_COMBINE_OPTIONS
from models.registry import FUSIONS, HEADS, MIXTURES, SEQUENCE_ENCODERS

POSITIONAL_OPTIONS = ("none", "sincos", "learned")  # Table 3: no / pos_sincos / pos_learn
# Bias tower inputs per option (Table 5, + all three): the item's position, its page, and the
# categories of the item and its K neighbours.
BIAS_PARTS = {"position_index": ("position",), "position_page": ("page",), "neighboring": ("neighbors",),
              "all": ("position", "page", "neighbors")}
BIAS_OPTIONS = ("none",) + tuple(BIAS_PARTS)
BIAS_NEIGHBOR_INPUTS = ("categories", "same_category")
DEFAULT_EMBEDDING_DIMS = {F.ITEM_ID: 32, F.CATEGORY_ID: 16, F.BRAND_ID: 16, F.SHOP_ID: 16}
# Reference contexts of the served probabilities (models/calibration.py).
CALIBRATION_TYPES = ("none", "reference")
REFERENCE_NEIGHBORS = ("distinct", "observed")
DEFAULT_MIXTURE = {"type": "immoe"}
DEFAULT_CALIBRATION = {"type": "reference", "position": 1, "page": 1, "neighbors": "distinct", "examples": 8192}
# Trainer settings an architecture may set for itself (models/trainer.py).
TRAINER_KEYS = ("batch_size", "epochs", "learning_rate", "eval_batches", "seed", "ema_momentum", "optimizer")
# Parts' sections and the registries that know their types.
PART_SECTIONS = {"sequence_encoder": SEQUENCE_ENCODERS, "mixture": MIXTURES, "heads": HEADS, "fusion": FUSIONS}
# Nested sections a preset's and a user's are merged for (models/config.py docstring).
MERGED_SECTIONS = tuple(PART_SECTIONS) + ("calibration",)


def _default_sequences() -> Dict[str, int]:
    return {name: max_length for name, (max_length, _) in F.SEQUENCES.items()}


def merge_section(base: Optional[Mapping[str, Any]], override: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A nested part section over another: merged when `type` is the same (or not given),
    replaced when it names another type."""
    base, override = dict(base or {}), dict(override or {})
    if "type" in override and override["type"] != base.get("type"):
        return override
    return {**base, **override}


@dataclass
class ModelConfig:
    preset: Optional[str] = None  # the preset this config was made from (models/presets.yaml)
    # --- objectives: the heads' tasks, their loss weights (DMT eq. 5 lambda_k, ESM² eq. 11 w)
    tasks: List[str] = field(default_factory=lambda: [F.CLICK, F.ORDER])
    loss_weights: Dict[str, float] = field(default_factory=dict)
    # --- encoders: item embedding (4.1.1), one encoder per behaviour sequence (4.2), context
    embedding_dims: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EMBEDDING_DIMS))
    embedding_l2: float = 0.0  # L2 on the batch's looked-up item embeddings (code: l2_emb_lambda)
    use_target_embedding: bool = True  # concat e_target into the mixture input (authors' code)
    # DCN-V2 cross layers on the mixture input (Wang et al., "DCN V2: Improved Deep & Cross
    # Network and Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021, eq. 1:
    # x_{l+1} = x_0 * (W_l x_l + b_l) + x_l), e.g. products of an interest vector and e_target
    cross_layers: int = 0
    sequences: Dict[str, int] = field(default_factory=_default_sequences)  # name -> max length
    sequence_encoder: Dict[str, Any] = field(default_factory=lambda: {"type": "transformer"})
    use_dense_features: bool = True
    bucketized_features: List[str] = field(
        default_factory=lambda: list(P.DEFAULT_TRANSFORM_CONFIG["bucketized_features"]))
    num_buckets: int = P.DEFAULT_TRANSFORM_CONFIG["num_buckets"]
    bucket_embedding_dim: int = 8
    # a scenario (site, country) embedding in the context. On by default (issue 10): over three
    # seeds on the default world it raised the served DMT's click efficiency at every seed
    # (0.792 -> 0.804) and left its within-request rankings level, and raised DNN(Base)'s every
    # truth figure (bench/results/ablations/scenario-seeds.md); the DeepCTR peers of
    # bench.peers_bench read it too. A log without the field has one scenario, `default`.
    use_scenario: bool = True
    scenario_embedding_dim: int = 8
    # the Transform's OOV buckets: the known scenarios are the vocabulary minus these
    num_oov_buckets: int = P.DEFAULT_TRANSFORM_CONFIG["num_oov_buckets"]
    # --- mixture (DMT 4.3), heads, score fusion (eq. 6)
    # IMMoE, measured (issue 10; the docstring above, README "Ablations", `mixture-seeds`)
    mixture: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MIXTURE))
    heads: Dict[str, Any] = field(default_factory=lambda: {"type": "independent"})
    # The product p_click * p_order (each task weight 1): chosen by measurement (issue 10): on the
    # default world it ranks purchases better than eq. 6's equal-weight sum of probabilities for
    # every network measured (pipeline/ablations.yaml `fusion`; README "Choosing the score").
    fusion: Dict[str, Any] = field(default_factory=lambda: {"type": "product"})
    # --- bias deep neural network (4.4, eq. 4), training only
    # Position, page and the categories of the target and its neighbours (DMT Table 5's `all`),
    # with observation dropout 0.8 below. The logging policy placed items by relevance, so a
    # tower reading position takes part of the relevance with it and serving drops it; zeroing
    # its logit on 80 % of the training examples makes the main network explain them alone.
    # Over 3 seeds this ties the neighbours-only tower within a request and leads it on click
    # efficiency across requests, on both served AUCs and on the training-time network
    # (bench/results/ablations/served-bias-seeds.md, README "The bias tower's inputs").
    bias_features: str = "all"
    bias_units: List[int] = field(default_factory=lambda: [64, 32])
    bias_embedding_dim: int = 8
    bias_dropout: float = 0.0
    # what the neighbouring bias reads (models/bias.py): "categories" (the paper's: the target's
    # and the K neighbours' categories) or "same_category" (which neighbours share the target's)
    bias_neighbors: str = "categories"
    # observation dropout (Zhang et al., KDD 2023; models/bias.py): each training example's bias
    # logit zeroed with this probability
    bias_output_dropout: float = 0.8
    # "logit": DMT eq. 5, y_k = sigmoid(u_k + y_b); "examination": PAL (Guo et al., RecSys
    # 2019), y_k = sigmoid(u_k) x p_seen with p_seen = sigmoid(NN_B(x_b)), the examination
    # hypothesis of position-bias click models (models/heads/base.py). The two tie on the default
    # world over seeds, with and without observation dropout (ablations `bias-combine`,
    # `bias-combine-seeds`; README "How the tower meets the towers")
    bias_combine: str = "logit"
    # --- what the served probabilities mean (models/calibration.py)
    calibration: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CALIBRATION))
    # --- training: per-example weights by the deepest funnel label (code's class_weight), e.g.
    # {click: 15, order: 400}; examples with none of the named labels weigh 1
    example_weights: Dict[str, float] = field(default_factory=dict)
    trainer: Dict[str, Any] = field(default_factory=dict)  # overrides of the `trainer:` section

    def __post_init__(self):
        self.embedding_dims = {**DEFAULT_EMBEDDING_DIMS, **dict(self.embedding_dims)}
        if isinstance(self.sequences, (list, tuple)):
            self.sequences = {s: F.SEQUENCES[s][0] if s in F.SEQUENCES else 0 for s in self.sequences}
        self.sequences = {str(k): int(v) for k, v in (self.sequences or {}).items()}
        self.tasks = list(self.tasks)
        self.loss_weights = self._per_task(self.loss_weights, "loss_weights")
        for name, registry in PART_SECTIONS.items():
            section = dict(getattr(self, name) or {})
            registry.validate(section)
            setattr(self, name, {"type": section["type"], **registry.defaults(section["type"]), **section})
        self.calibration = merge_section(DEFAULT_CALIBRATION, self.calibration)
        if self.calibration["type"] == "none":
            self.calibration = {"type": "none"}
        self.example_weights = {str(k): float(v) for k, v in (self.example_weights or {}).items()}
        self.trainer = dict(self.trainer or {})
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

        check(len(self.tasks) > 0 and len(set(self.tasks)) == len(self.tasks), "tasks: non-empty, unique")
        check(set(self.tasks) <= set(F.LABELS), f"tasks must be among {F.LABELS}")
        heads_class = HEADS.get(self.heads["type"])
        check(heads_class.TASKS is None or self.tasks == list(heads_class.TASKS),
              f"heads {self.heads['type']!r} need tasks {list(heads_class.TASKS or [])}")
        outputs = self.tasks + list(heads_class.EXTRA_OUTPUTS)
        weights = self.fusion.get("weights") or {}
        check(set(weights) <= set(outputs), f"fusion weights must name served outputs {outputs}")
        check(all(float(w) > 0 for w in weights.values()), "fusion weights must be positive")
        FUSIONS.get(self.fusion["type"]).validate_section(self.fusion, self.tasks)
        check(set(self.embedding_dims) == set(F.ITEM_ID_FEATURES), f"embedding_dims keys: {F.ITEM_ID_FEATURES}")
        check(all(v > 0 for v in self.embedding_dims.values()), "embedding dims must be positive")
        check(self.embedding_l2 >= 0, "embedding_l2 must be non-negative")
        check(set(self.sequences) <= set(F.SEQUENCES), f"sequences must be among {tuple(F.SEQUENCES)}")
        check(all(v > 0 for v in self.sequences.values()), "sequence max lengths must be positive")
        if self.sequence_encoder["type"] == "transformer":
            e = self.sequence_encoder
            check(int(e["num_heads"]) > 0 and self.d_model % int(e["num_heads"]) == 0,
                  f"d = {self.d_model} must be divisible by num_heads = {e['num_heads']} (d_k = d / h)")
            check(int(e["encoder_blocks"]) >= 0 and int(e["decoder_blocks"]) >= 1,
                  "encoder_blocks >= 0, decoder_blocks >= 1")
            check(0.0 <= float(e["dropout"]) < 1.0, "dropout in [0, 1)")
            check(e["positional"] in POSITIONAL_OPTIONS, f"positional must be one of {POSITIONAL_OPTIONS}")
        check(0.0 <= self.bias_dropout < 1.0, "bias_dropout in [0, 1)")
        check(0.0 <= float(self.bias_output_dropout) < 1.0, "bias_output_dropout in [0, 1)")
        check(int(self.cross_layers) >= 0, "cross_layers must be >= 0")
        check(self.bias_features in BIAS_OPTIONS, f"bias_features must be one of {BIAS_OPTIONS}")
        check(self.bias_neighbors in BIAS_NEIGHBOR_INPUTS, f"bias_neighbors must be one of {BIAS_NEIGHBOR_INPUTS}")
        check(self.bias_combine in BIAS_COMBINE_OPTIONS, f"bias_combine must be one of {BIAS_COMBINE_OPTIONS}")
        check(set(self.bucketized_features) <= set(F.DENSE_FEATURES), "bucketized_features must be dense features")
        check(all(w >= 0 for w in self.loss_weights.values()), "loss weights must be non-negative")
        check(self.num_oov_buckets >= 0, "num_oov_buckets must be non-negative")
        c = self.calibration
        check(c["type"] in CALIBRATION_TYPES, f"calibration type must be one of {CALIBRATION_TYPES}")
        if c["type"] == "reference":
            check(set(c) <= set(DEFAULT_CALIBRATION), f"calibration keys: {sorted(DEFAULT_CALIBRATION)}")
            check(1 <= int(c["position"]) <= F.MAX_POSITION and 1 <= int(c["page"]) <= F.MAX_PAGE,
                  "calibration position / page out of range")
            check(c["neighbors"] in REFERENCE_NEIGHBORS, f"calibration neighbors: one of {REFERENCE_NEIGHBORS}")
            check(int(c["examples"]) > 0, "calibration examples must be positive")
        check(set(self.example_weights) <= set(F.LABELS),
              f"example_weights must name labels {F.LABELS}")
        check(all(w > 0 for w in self.example_weights.values()), "example weights must be positive")
        check(set(self.trainer) <= set(TRAINER_KEYS), f"trainer overrides must be among {TRAINER_KEYS}")

    @property
    def d_model(self) -> int:
        """Width d of e_i (4.1.1) and of the Transformer (4.2.2)."""
        return sum(self.embedding_dims[f] for f in F.ITEM_ID_FEATURES)

    @property
    def ffn_units(self) -> int:
        """d_f of eq. 2."""
        ffn = self.sequence_encoder.get("ffn_dim")
        return int(ffn) if ffn else 4 * self.d_model

    @property
    def uses_buckets(self) -> bool:
        return self.use_dense_features and bool(self.bucketized_features)

    @property
    def uses_scenario(self) -> bool:
        """Whether the network reads `scenario` (an embedding, or a scenario-aware mixture)."""
        return self.use_scenario or MIXTURES.get(self.mixture["type"]).uses_scenario

    @property
    def served_outputs(self) -> List[str]:
        return self.tasks + list(HEADS.get(self.heads["type"]).EXTRA_OUTPUTS)

    @classmethod
    def from_dict(cls, section: Optional[Mapping[str, Any]] = None,
                  transform_config: Optional[Mapping[str, Any]] = None) -> "ModelConfig":
        """From a YAML `model:` section; unknown keys are an error.

        `preset: NAME` (default `dmt`) starts from that preset (models/presets.yaml); the
        other keys override it. `transform_config` (preprocessing.transform_config(...)) supplies
        `bucketized_features`, `num_buckets` and `num_oov_buckets` unless the section sets
        them, so the model matches the Transform.
        """
        from models.presets import DEFAULT_PRESET, preset_section

        section = copy.deepcopy(dict(section or {}))
        if "model_type" in section:
            raise ValueError("model config: `model_type` was replaced by `preset` "
                             "(e.g. `preset: dnn-base`; `funnel presets` lists them)")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(section) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}; known: {sorted(names)}")
        base = preset_section(section.get("preset") or DEFAULT_PRESET)
        for key, value in section.items():
            if key == "preset" and value is None:
                continue
            if key in MERGED_SECTIONS:
                default = next(f.default_factory() for f in dataclasses.fields(cls) if f.name == key)
                value = merge_section(merge_section(default, base.get(key)), value)
            base[key] = value
        section = base
        if transform_config is not None:
            section.setdefault("bucketized_features", list(transform_config["bucketized_features"]))
            section.setdefault("num_buckets", int(transform_config["num_buckets"]))
            if "num_oov_buckets" in transform_config:
                section.setdefault("num_oov_buckets", int(transform_config["num_oov_buckets"]))
        return cls(**section)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
