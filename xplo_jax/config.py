"""Typed configuration: frozen dataclasses, defined once.

A ``Config`` has one section per stage. Command lines override fields with
``section.field=value`` (e.g. ``model.latent_dim=100 train.epochs=5``); values are
parsed to the field's declared type. Every run writes its resolved config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any, Optional

from xplo_jax.errors import ConfigError

__all__ = ["EXECUTION_ONLY", "result_fields", "DataConfig", "PreprocessConfig", "ModelConfig", "BaselineConfig", "TrainConfig", "EvalConfig",
           "Config", "apply_overrides", "config_to_dict", "config_from_dict", "fingerprint"]

DATASETS = ("synthetic", "ml-100k", "ml-1m", "ml-10m", "ml-latest", "netflix", "alibaba",
            "csv", "split-dir")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Loading, binarization, k-core filtering and the split (DESIGN.md §1)."""
  dataset: str = "synthetic"
  data_dir: Optional[str] = None
  source: str = "files"                 # files | tfds (MovieLens through tensorflow-datasets)
  # csv / tsv input
  columns: Optional[str] = None         # e.g. "user,item,rating,timestamp" or positional "0,1,2"
  sep: Optional[str] = None             # None: sniffed from the first line
  header: str = "auto"                  # auto | yes | no
  # synthetic input (the embedded default)
  synthetic_preset: str = "ml-100k"
  synthetic_scale: float = 1.0
  synthetic_seed: int = 0
  # binarization and filtering
  rating_threshold: float = 4.0         # explicit ratings >= threshold are positives
  behaviors: tuple[str, ...] = ("pv", "buy")  # Taobao behaviors kept as positives
  min_user_interactions: int = 10       # iterative k-core
  min_item_interactions: int = 10
  # split (per user, seeded)
  test_frac: float = 0.2
  valid_frac: float = 0.1               # of each user's train part
  split_seed: int = 0
  # downloads (MovieLens only, when files are absent)
  download: bool = True
  cache_dir: Optional[str] = None       # default: $XPLO_JAX_CACHE or ~/.cache/xplo_jax

  def validate(self) -> None:
    if self.dataset not in DATASETS:
      raise ConfigError(f"data.dataset: {self.dataset!r} is not one of {', '.join(DATASETS)}")
    if self.source not in ("files", "tfds"):
      raise ConfigError(f"data.source: {self.source!r} is not 'files' or 'tfds'")
    if not 0.0 < self.test_frac < 1.0:
      raise ConfigError(f"data.test_frac: expected a fraction in (0, 1), got {self.test_frac}")
    if not 0.0 <= self.valid_frac < 1.0:
      raise ConfigError(f"data.valid_frac: expected a fraction in [0, 1), got {self.valid_frac}")
    if self.min_user_interactions < 1 or self.min_item_interactions < 1:
      raise ConfigError("data.min_user_interactions / min_item_interactions must be >= 1")
    if self.header not in ("auto", "yes", "no"):
      raise ConfigError(f"data.header: expected auto, yes or no, got {self.header!r}")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
  """User subgraphs, shortest-path strata and the item kNN graph (DESIGN.md §2, §4)."""
  threshold_mode: str = "quantile"      # quantile | absolute | topn
  threshold: float = 0.9                # c2: quantile level, absolute count or n
  a2_cap: int = 1024                    # max |A2| per user (largest E2 kept, ties: smaller id)
  knn: int = 300                        # K_n neighbours per item (clamped to |V| - 1)
  width_multiple: int = 64              # padded id-list widths are multiples of this
  shard_users: int = 8192               # users per shard file
  memory_gb: float = 4.0                # working-memory budget for the chunked passes

  def validate(self) -> None:
    if self.threshold_mode not in ("quantile", "absolute", "topn"):
      raise ConfigError(f"preprocess.threshold_mode: {self.threshold_mode!r} is not quantile, absolute or topn")
    if self.threshold_mode == "quantile" and not 0.0 <= self.threshold <= 1.0:
      raise ConfigError(f"preprocess.threshold: a quantile level must lie in [0, 1], got {self.threshold}")
    if self.threshold_mode in ("absolute", "topn") and self.threshold < 1:
      raise ConfigError(f"preprocess.threshold: {self.threshold_mode} mode needs a value >= 1, got {self.threshold}")
    if self.a2_cap < 0 or self.knn < 1 or self.width_multiple < 1 or self.shard_users < 1:
      raise ConfigError("preprocess: a2_cap >= 0, knn >= 1, width_multiple >= 1, shard_users >= 1")
    if self.memory_gb <= 0:
      raise ConfigError(f"preprocess.memory_gb must be positive, got {self.memory_gb}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """XploVAE sizes (DESIGN.md §2). Other models read the fields they need."""
  name: str = "xplovae"
  orders: int = 2                       # K: rows of the user subgraph
  latent_dim: int = 200                 # P
  embed_dim: int = 3                    # D
  hidden_dim: int = 600                 # encoder width
  proximity_layers: int = 2             # R
  conv_layers: int = 2                  # M
  input_dropout: float = 0.1
  conv_kernel: str = "auto"             # auto | dense | gather
  dense_conv_budget_mb: float = 0.0     # auto: dense kernel while its matrices fit (0 = 1/4 of device memory, 4 GiB on CPU)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
  """Hyperparameters of the baselines (``../shared/paper/baselines.md``), prefixed by model.

  The shared ``train`` section (learning rate, batch size, epochs, early stopping)
  applies to every iteratively trained model.
  """
  # NCF / NeuMF (He et al. 2017)
  ncf_factors: int = 8                  # GMF embedding size = last MLP layer width
  ncf_mlp_layers: tuple[int, ...] = (64, 32, 16, 8)
  ncf_negatives: int = 4                # sampled negatives per positive, resampled every epoch
  ncf_pretrain: bool = False            # NeuMF initialized from trained GMF and MLP
  ncf_pretrain_epochs: int = 20
  # Mult-VAE (Liang et al. 2018)
  multvae_hidden: int = 600
  multvae_latent: int = 200
  multvae_dropout: float = 0.5
  multvae_beta_cap: float = 0.2
  multvae_anneal_steps: int = 200000
  # NGCF (Wang et al. 2019) and LightGCN
  gcn_embed_dim: int = 64
  gcn_layers: int = 3
  gcn_reg: float = 1e-5
  ngcf_message_dropout: float = 0.1
  ngcf_edge_dropout: float = 0.1
  bpr_samples_per_user: int = 32        # (pos, neg) triples per user per step (NGCF, LightGCN)
  # EASE (Steck 2019): λ chosen on validation NDCG@20 among these
  ease_lambdas: tuple[float, ...] = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
  # ItemKNN
  itemknn_k: int = 100
  itemknn_similarity: str = "cosine"    # cosine | jaccard
  # INH-MF (Lian et al. 2018)
  inhmf_bits: int = 128
  inhmf_windows: tuple[int, ...] = (1, 2, 3)  # T (powers of the random walk in M): chosen on validation
  inhmf_iterations: int = 50
  inhmf_gamma: float = 0.0
  # T(J&P) reconstruction (Nakatsuji et al. 2010)
  tjp_neighbors: int = 50
  tjp_graph_k: int = 50
  tjp_restart: float = 0.15
  tjp_novelty_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # λ_n, chosen on validation


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimization and the stratified objective (DESIGN.md §2)."""
  batch_size: int = 512
  learning_rate: float = 1e-3
  epochs: int = 1000
  patience: int = 20                    # evaluations without a better validation metric
  min_steps: int = 1000                 # no early stop before this many steps (VAEs start slowly)
  beta: float = 0.2                     # KL weight (cap when annealed)
  beta_schedule: str = "constant"       # constant | linear
  beta_anneal_steps: int = 20000
  negatives: str = "stratified"         # stratified | uniform | full
  samples_per_stratum: tuple[int, ...] = (64,)  # n_{k,t}: one value, or one per Q-class (Q=1,3,5,>=7)
  uniform_samples: int = 256            # negatives per row in uniform mode
  seed: int = 0
  eval_every: int = 0                   # epochs between evaluations (+ checkpoints); 0 = auto (~20 steps)
  log_every: int = 50                   # steps


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Full-ranking evaluation (DESIGN.md §3)."""
  ks: tuple[int, ...] = (10, 20, 50)
  select_metric: str = "ndcg@20"        # early stopping and best checkpoint
  user_batch: int = 256
  item_chunk: int = 16384


@dataclasses.dataclass(frozen=True)
class Config:
  data: DataConfig = DataConfig()
  preprocess: PreprocessConfig = PreprocessConfig()
  model: ModelConfig = ModelConfig()
  baseline: BaselineConfig = BaselineConfig()
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()

  def validate(self) -> "Config":
    self.data.validate()
    self.preprocess.validate()
    return self


def _parse_value(text: str, tp: Any, key: str):
  origin = typing.get_origin(tp)
  args = typing.get_args(tp)
  if origin is typing.Union:  # Optional[X]
    if text.lower() in ("none", "null", ""):
      return None
    inner = [a for a in args if a is not type(None)]
    return _parse_value(text, inner[0], key)
  if origin is tuple:
    parts = [p for p in text.split(",") if p != ""]
    return tuple(_parse_value(p, args[0], key) for p in parts)
  try:
    if tp is bool:
      low = text.lower()
      if low in ("1", "true", "yes", "on"):
        return True
      if low in ("0", "false", "no", "off"):
        return False
      raise ValueError(text)
    if tp is int:
      return int(text)
    if tp is float:
      return float(text)
    if tp is str:
      return text
  except ValueError:
    raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {text!r}") from None
  raise ConfigError(f"{key}: cannot parse values of type {tp}")


def apply_overrides(config: Config, overrides: list[str] | dict[str, Any]) -> Config:
  """Returns ``config`` with ``section.field=value`` overrides applied.

  Raises:
    ConfigError: unknown section or field, or a value of the wrong type.
  """
  items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
  for key, value in items:
    if "." not in key:
      raise ConfigError(f"override {key!r}: expected section.field (sections: "
                        f"{', '.join(f.name for f in dataclasses.fields(Config))})")
    section, field = key.split(".", 1)
    if section not in {f.name for f in dataclasses.fields(Config)}:
      raise ConfigError(f"override {key!r}: unknown section {section!r}")
    sub = getattr(config, section)
    hints = typing.get_type_hints(type(sub))
    if field not in hints:
      raise ConfigError(f"override {key!r}: {section} has no field {field!r} "
                        f"(fields: {', '.join(f.name for f in dataclasses.fields(sub))})")
    if isinstance(value, str):
      value = _parse_value(value, hints[field], key)
    config = dataclasses.replace(config, **{section: dataclasses.replace(sub, **{field: value})})
  return config


def _split_override(text: str) -> tuple[str, str]:
  if "=" not in text:
    raise ConfigError(f"override {text!r}: expected section.field=value")
  key, value = text.split("=", 1)
  return key.strip(), value.strip()


# Settings that change how a run executes, not what it computes (results are tested to be
# independent of them): a finished run is reused, and a run resumed, across changes of these.
EXECUTION_ONLY = ("preprocess.memory_gb", "model.dense_conv_budget_mb", "eval.user_batch", "eval.item_chunk",
                  "train.log_every")


def config_to_dict(config) -> dict:
  return dataclasses.asdict(config)


def result_fields(d: dict) -> dict:
  """A config dict (as written to config.json) without the ``EXECUTION_ONLY`` fields."""
  out = {s: dict(v) for s, v in d.items()}
  for key in EXECUTION_ONLY:
    section, field = key.split(".")
    out.get(section, {}).pop(field, None)
  return out


def config_from_dict(d: dict) -> Config:
  """Inverse of ``config_to_dict`` (unknown keys are an error)."""
  sections = {}
  for f in dataclasses.fields(Config):
    cls = f.type if isinstance(f.type, type) else type(getattr(Config(), f.name))
    sub = d.get(f.name, {})
    hints = typing.get_type_hints(cls)
    unknown = set(sub) - set(hints)
    if unknown:
      raise ConfigError(f"config section {f.name}: unknown fields {sorted(unknown)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sub.items()}
    sections[f.name] = cls(**kwargs)
  return Config(**sections)


def fingerprint(obj) -> str:
  """A short stable hash of a (nested) dataclass or JSON-able object."""
  if dataclasses.is_dataclass(obj):
    obj = dataclasses.asdict(obj)
  text = json.dumps(obj, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
