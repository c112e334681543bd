"""NCF: GMF, MLP and NeuMF (He, Liao, Zhang, Nie, Hu & Chua, WWW 2017) on the shared split and evaluator.

Source followed: ``hexiangnan/neural_collaborative_filtering`` (``GMF.py``, ``MLP.py``,
``NeuMF.py``, ``README.md``; notes in ``shared/paper/baselines.md`` §1).

Model, for user u and item i (separate GMF and MLP embedding tables):

    φ_G   = p_u ⊙ q_i                                         p, q ∈ R^k          (k = ncf_factors)
    z₀    = [p'_u ; q'_i],  z_l = ReLU(W_l z_{l−1} + b_l)     p', q' ∈ R^{m₀/2}   (m = ncf_mlp_layers)
    φ_M   = z_L                                               widths m₁ … m_L (e.g. 32 → 16 → 8)
    ŷ_ui  = σ(hᵀ φ + b),  φ = φ_G (GMF), φ_M (MLP) or [φ_G ; φ_M] (NeuMF)

Objective (minimized): binary cross-entropy over the positives (u, i) ∈ A₁ (label 1)
and ``ncf_negatives`` = 4 negatives per positive (label 0), drawn uniformly from the
items u has NOT interacted with in training, averaged over the real instances of the
batch:

    L = 1 / (|R⁺_B| + |R⁻_B|) · [ Σ_{R⁺_B} softplus(−x_ui) + Σ_{R⁻_B} softplus(x_uj) ],  x = hᵀφ + b

Defaults: k = 8, m = (64, 32, 16, 8), 4 negatives, no L2 (``reg_mf = 0``,
``reg_layers = [0,0,0,0]``), Adam at ``train.learning_rate`` (1e-3); embeddings
N(0, 0.01²) (``init_normal``: ``initializations.normal(shape, scale=0.01)``), hidden
layers Glorot-uniform with zero bias (Keras' ``Dense`` default), output layer
LeCun-uniform (``init='lecun_uniform'``) with zero bias.

Recipes: ``gmf``, ``mlp``, ``neumf`` (alias ``ncf``) and ``neumf-pre``: NeuMF initialized
from a GMF and an MLP trained first with the same shared loop for
``baseline.ncf_pretrain_epochs`` epochs each (sub-folders ``pretrain-gmf`` and
``pretrain-mlp`` of the run), their best checkpoints restored, then exactly
``load_pretrain_model``: embeddings and MLP layers copied, h = [α h_GMF ; (1−α) h_MLP],
b = α b_GMF + (1−α) b_MLP with α = 0.5. ``neumf`` / ``ncf`` also pretrain when
``baseline.ncf_pretrain`` is true.

Readings of the source made here:

* Batches: the shared loop visits users, not instances. One step takes B users with
  ALL their train positives and 4 fresh negatives per positive; the source shuffles
  all |R⁺|·5 instances and fits Keras batches of 256 instances, so an epoch here has
  far fewer (larger) updates. The loss is the mean over the batch's real instances,
  as Keras' ``binary_crossentropy`` averages over its batch.
* Negatives: for each positive the source draws ``np.random.randint(num_items)`` and
  rejects train items (``while train.has_key((u, j))``), i.e. 4 independent uniform
  draws from u's non-train items. Here: 4·|A₁(u)| independent uniform draws from the
  items whose label is not 0 (``losses.sample_zeros``, uniform plan), inside the jit
  from ``fold_in(key, step)``. Each epoch visits every user once, so every epoch
  gets fresh negatives ("resampled every epoch"). Valid/test items can be drawn as
  negatives, as in the source (it only rejects training pairs).
* The last MLP layer keeps its ReLU: every ``Dense`` of the loop is ``activation='relu'``
  (``layer%d``); it then goes through the output unit.
* Pretraining, fine-tuning: the source reloads the two models' weights and trains
  NeuMF with the chosen learner (the README example: ``--learner adam --lr 0.001``);
  the paper fine-tunes with plain SGD because Adam's moments are not transferred.
  Here fine-tuning is the shared loop's fresh Adam at ``train.learning_rate`` (the
  README's choice). The kept checkpoint of each stage is the shared loop's best
  validation NDCG@20 (the source keeps the best HR@10 of its leave-one-out protocol).
* Ranking: by the logit x_ui (σ is monotone), all items of a chunk for every user,
  train (and valid when testing) items masked by the shared evaluator.

Efficiency: the first MLP layer on [p'_u ; q'_i] is split as p'_u W_u + q'_i W_i, so the
user half is computed once per user and the item half once per item of a chunk;
GMF's output is (p_u ⊙ h_G) · q_iᵀ, one GEMM over the chunk. Only the hidden MLP
layers run on all [B, C] pairs, hence a memory-bound item chunk (``MLP_ITEM_CHUNK``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xplo_jax import losses
from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["NCF", "NCFStatic", "GMFRecipe", "MLPRecipe", "NeuMFRecipe", "NeuMFPretrainedRecipe", "RECIPES",
           "sample_negatives", "bce_loss", "combine_pretrained", "PRETRAIN_ALPHA", "MLP_ITEM_CHUNK"]

KINDS = ("gmf", "mlp", "neumf")
PRETRAIN_ALPHA = 0.5        # load_pretrain_model: set_weights([0.5*new_weights, 0.5*new_b])
MLP_ITEM_CHUNK = 2048       # items per scoring chunk when the MLP runs on [B, C] pairs


class NCF(nnx.Module):
  """GMF, MLP or NeuMF as one NNX module.

  Args:
    num_users, num_items: table sizes.
    kind: 'gmf', 'mlp' or 'neumf'.
    factors: k, the GMF embedding size.
    mlp_layers: (m₀, m₁, …, m_L): m₀ = width of [p'_u ; q'_i] (m₀/2 per side), then the
      widths of the ReLU layers.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, num_users: int, num_items: int, *, kind: str = "neumf", factors: int = 8,
               mlp_layers: tuple[int, ...] = (64, 32, 16, 8), rngs: nnx.Rngs):
    if kind not in KINDS:
      raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    mlp_layers = tuple(int(m) for m in mlp_layers)
    if kind != "gmf" and (not mlp_layers or mlp_layers[0] % 2 or min(mlp_layers) < 1):
      raise ValueError(f"mlp_layers must start with an even input width and hold positive widths, got {mlp_layers}")
    if kind != "mlp" and factors < 1:
      raise ValueError(f"factors must be >= 1, got {factors}")
    self.kind, self.factors, self.mlp_layers = kind, int(factors), mlp_layers
    self.num_users, self.num_items = num_users, num_items
    emb = jax.nn.initializers.normal(stddev=0.01)
    glorot = jax.nn.initializers.glorot_uniform()
    zeros = jax.nn.initializers.zeros
    dim = 0
    if kind in ("gmf", "neumf"):
      self.gmf_user = nnx.Param(emb(rngs.params(), (num_users, factors)))
      self.gmf_item = nnx.Param(emb(rngs.params(), (num_items, factors)))
      dim += factors
    if kind in ("mlp", "neumf"):
      half = mlp_layers[0] // 2
      self.mlp_user = nnx.Param(emb(rngs.params(), (num_users, half)))
      self.mlp_item = nnx.Param(emb(rngs.params(), (num_items, half)))
      self.mlp = nnx.List([nnx.Linear(a, b, kernel_init=glorot, bias_init=zeros, rngs=rngs)
                           for a, b in zip(mlp_layers[:-1], mlp_layers[1:])])
      dim += mlp_layers[-1]
    self.predict = nnx.Linear(dim, 1, kernel_init=jax.nn.initializers.lecun_uniform(), bias_init=zeros,
                              rngs=rngs)

  @property
  def uses_mlp(self) -> bool:
    return self.kind in ("mlp", "neumf")

  def __call__(self, users: jax.Array, items: jax.Array) -> jax.Array:
    """Logits x_ui = hᵀφ + b.

    Args:
      users: [B] int32 user ids.
      items: [C] item ids shared by all users, or [B, N] per-user item ids.

    Returns:
      [B, C] or [B, N] logits.
    """
    shared = items.ndim == 1
    h_out = self.predict.kernel[...][:, 0]
    out = jnp.zeros((users.shape[0], items.shape[0] if shared else items.shape[1]), jnp.float32)
    off = 0
    if self.kind in ("gmf", "neumf"):
      k = self.factors
      pu = jnp.take(self.gmf_user[...], users, axis=0) * h_out[None, :k]       # h_Gᵀ (p ⊙ q) = (p ⊙ h_G) · q
      qi = jnp.take(self.gmf_item[...], items, axis=0)
      out = out + (jnp.einsum("bk,ck->bc", pu, qi) if shared else jnp.einsum("bk,bnk->bn", pu, qi))
      off = k
    if self.uses_mlp:
      half = self.mlp_layers[0] // 2
      pu = jnp.take(self.mlp_user[...], users, axis=0)                          # [B, m₀/2]
      qi = jnp.take(self.mlp_item[...], items, axis=0)                          # [C, m₀/2] or [B, N, m₀/2]
      if self.mlp:
        first = self.mlp[0]
        w = first.kernel[...]
        a = pu @ w[:half] + first.bias[...][None, :]                            # user half, once per user
        c = qi @ w[half:]                                                       # item half, once per item
        z = jax.nn.relu(a[:, None, :] + (c[None] if shared else c))
        for layer in self.mlp[1:]:
          z = jax.nn.relu(layer(z))
      else:                                                                     # m = (m₀,): φ_M = z₀
        n = out.shape[1]
        qi = jnp.broadcast_to(qi[None], (pu.shape[0], n, half)) if shared else qi
        z = jnp.concatenate([jnp.broadcast_to(pu[:, None, :], (pu.shape[0], n, half)), qi], axis=-1)
      out = out + z @ h_out[off:]
    return out + self.predict.bias[...][0]


# ----------------------------------------------------------------------------- loss

def sample_negatives(key: jax.Array, labels: jax.Array, lens: jax.Array, per_positive: int, width: int):
  """``per_positive`` uniform non-train items per positive of each user.

  Args:
    key: PRNG key.
    labels: [B, |V|] uint8 label rows (0 = train item of that user).
    lens: [B] number of train positives of each user.
    per_positive: negatives per positive (4).
    width: W, the padded width of the positive lists.

  Returns:
    ids: [B, per_positive · W] int32 item ids (independent uniform draws, with
      replacement, from the user's items with label != 0).
    mask: [B, per_positive · W] bool, True on the first per_positive · lens real draws
      (False everywhere for a user without a non-train item).
  """
  n = per_positive * width
  ids, weights, _ = losses.sample_zeros(key, labels, losses.stratum_plan(1, "uniform", (0,), n))
  mask = (jnp.arange(n)[None, :] < per_positive * lens[:, None]) & (weights > 0)
  return ids, mask


def bce_loss(model: NCF, users: jax.Array, pos: jax.Array, pos_mask: jax.Array, neg: jax.Array,
             neg_mask: jax.Array):
  """Mean binary cross-entropy over the real instances, and how many there were.

  Args:
    model: the NCF module.
    users: [B] user ids; pos [B, W] positive ids with pos_mask [B, W]; neg [B, S]
      negative ids with neg_mask [B, S] (masks: 1/True on real instances).

  Returns:
    (mean of softplus(−x) over positives and softplus(x) over negatives, instance count).
  """
  x = model(users, jnp.concatenate([pos, neg], axis=1))
  # −log σ(x) = softplus(−x) (label 1); −log(1 − σ(x)) = softplus(x) (label 0): stable for any x.
  w = pos.shape[1]
  per = jnp.concatenate([jax.nn.softplus(-x[:, :w]), jax.nn.softplus(x[:, w:])], axis=1)
  mask = jnp.concatenate([pos_mask, neg_mask], axis=1).astype(jnp.float32)
  count = mask.sum()
  return jnp.sum(per * mask) / jnp.maximum(count, 1.0), count


@dataclasses.dataclass(frozen=True)
class NCFStatic:
  learning_rate: float
  negatives: int


# ----------------------------------------------------------------------------- recipes

@dataclasses.dataclass(frozen=True)
class _NCFRecipe(Recipe):
  """Shared by the GMF, MLP and NeuMF recipes (they differ by ``kind`` and ``pretrain``)."""
  kind: ClassVar[str] = "neumf"
  pretrain: ClassVar[bool] = False

  def build(self, cfg: Config, data: SubgraphData, rngs: nnx.Rngs) -> NCF:
    b = cfg.baseline
    return NCF(data.n_users, data.n_items, kind=self.kind, factors=b.ncf_factors, mlp_layers=b.ncf_mlp_layers,
               rngs=rngs)

  def static(self, cfg: Config) -> NCFStatic:
    if cfg.baseline.ncf_negatives < 1:
      from xplo_jax.errors import ConfigError
      raise ConfigError(f"baseline.ncf_negatives must be >= 1, got {cfg.baseline.ncf_negatives}")
    return NCFStatic(learning_rate=cfg.train.learning_rate, negatives=cfg.baseline.ncf_negatives)

  def batch_fields(self) -> tuple[str, ...]:
    return ("users", "a1_ids", "a1_len", "labels")

  def loss(self, model: NCF, batch: dict, step, key, st: NCFStatic):
    """BCE over each real user's positives and ``st.negatives`` fresh negatives per positive."""
    ids, lens = batch["a1_ids"], batch["a1_len"]
    valid = batch["valid"][:, None]
    neg, neg_mask = sample_negatives(key, batch["labels"], lens, st.negatives, ids.shape[1])
    pos_mask = jnp.arange(ids.shape[1])[None, :] < lens[:, None]
    loss, count = bce_loss(model, batch["users"], ids, pos_mask & valid, neg, neg_mask & valid)
    return loss, {"instances": count}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"users": users.astype(np.int32)}

  def scorer(self, graphdef, model: NCF, item_chunk: int) -> Scorer:
    chunk = min(item_chunk, MLP_ITEM_CHUNK) if model.uses_mlp else item_chunk

    def prepare(pr, inputs):
      return inputs["users"]

    def score(pr, users, items):
      return nnx.merge(graphdef, *pr)(users, items)

    return Scorer(prepare=prepare, score=score, item_chunk=chunk)

  def init_params(self, cfg: Config, data: SubgraphData, graphdef, params, rest, workdir):
    """NeuMF from pretrained GMF and MLP (``neumf-pre``, or ``baseline.ncf_pretrain``)."""
    if self.kind != "neumf" or not (self.pretrain or cfg.baseline.ncf_pretrain):
      return params
    gmf = _pretrained(cfg, data, "gmf", Path(workdir) / "pretrain-gmf")
    mlp = _pretrained(cfg, data, "mlp", Path(workdir) / "pretrain-mlp")
    model = nnx.merge(graphdef, params, rest, copy=True)      # copy: the caller's state stays untouched
    combine_pretrained(model, gmf, mlp)
    return nnx.split(model, nnx.Param, ...)[1]


@dataclasses.dataclass(frozen=True)
class GMFRecipe(_NCFRecipe):
  name: ClassVar[str] = "gmf"
  kind: ClassVar[str] = "gmf"


@dataclasses.dataclass(frozen=True)
class MLPRecipe(_NCFRecipe):
  name: ClassVar[str] = "mlp"
  kind: ClassVar[str] = "mlp"


@dataclasses.dataclass(frozen=True)
class NeuMFRecipe(_NCFRecipe):
  name: ClassVar[str] = "neumf"
  kind: ClassVar[str] = "neumf"


@dataclasses.dataclass(frozen=True)
class NeuMFPretrainedRecipe(_NCFRecipe):
  name: ClassVar[str] = "neumf-pre"
  kind: ClassVar[str] = "neumf"
  pretrain: ClassVar[bool] = True


# ----------------------------------------------------------------------------- pretraining

def combine_pretrained(neumf: NCF, gmf: NCF, mlp: NCF, alpha: float = PRETRAIN_ALPHA) -> None:
  """``load_pretrain_model``, in place: copy embeddings and MLP layers, mix the output units.

  h = [α h_GMF ; (1 − α) h_MLP],  b = α b_GMF + (1 − α) b_MLP   (the source: α = 0.5).
  """
  if (neumf.kind, gmf.kind, mlp.kind) != ("neumf", "gmf", "mlp"):
    raise ValueError("combine_pretrained(neumf, gmf, mlp) expects models of those kinds")
  neumf.gmf_user[...] = gmf.gmf_user[...]
  neumf.gmf_item[...] = gmf.gmf_item[...]
  neumf.mlp_user[...] = mlp.mlp_user[...]
  neumf.mlp_item[...] = mlp.mlp_item[...]
  for dst, src in zip(neumf.mlp, mlp.mlp):
    dst.kernel[...] = src.kernel[...]
    dst.bias[...] = src.bias[...]
  neumf.predict.kernel[...] = jnp.concatenate([alpha * gmf.predict.kernel[...],
                                                (1.0 - alpha) * mlp.predict.kernel[...]], axis=0)
  neumf.predict.bias[...] = alpha * gmf.predict.bias[...] + (1.0 - alpha) * mlp.predict.bias[...]


def pretrain_config(cfg: Config, kind: str) -> Config:
  """The config of a pretraining stage: same data, sizes and optimizer, ``ncf_pretrain_epochs`` epochs."""
  return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=kind),
                             baseline=dataclasses.replace(cfg.baseline, ncf_pretrain=False),
                             train=dataclasses.replace(cfg.train, epochs=cfg.baseline.ncf_pretrain_epochs))


def _pretrained(cfg: Config, data: SubgraphData, kind: str, folder: Path) -> NCF:
  """Trains (or finishes, or reuses) a GMF / MLP stage in ``folder``; its best checkpoint as a module."""
  from xplo_jax import train as train_lib          # train imports recipes: import on use
  from xplo_jax.checkpoint import Checkpointer
  from xplo_jax.recipes import get_recipe
  from xplo_jax.sharding import make_mesh
  sub = pretrain_config(cfg, kind)
  if not _finished_with(folder, sub):
    # An interrupted stage is resumed (train.py refuses a different config), so rerunning
    # neumf-pre before its first checkpoint does not train the stage from scratch again.
    resume = train_lib.ckpt_exists(folder)
    log.info("NeuMF pretraining: %s for %d epochs in %s%s", kind, sub.train.epochs, folder,
             " (resumed)" if resume else "")
    train_lib.train_and_evaluate(sub, folder, data, resume=resume, progress=False)
  best = int(json.loads((folder / "final.json").read_text())["best_epoch"])
  _, graphdef, params, rest, opt_state = train_lib.create_state(sub, data, get_recipe(kind), make_mesh())
  ckpt = Checkpointer(folder / "checkpoints")
  try:
    params, _, _ = ckpt.restore(best, params, opt_state)
  finally:
    ckpt.close()
  return nnx.merge(graphdef, params, rest)


def _finished_with(folder: Path, cfg: Config) -> bool:
  """Whether ``folder`` holds a finished run of exactly ``cfg`` (then it is reused as is)."""
  from xplo_jax.config import config_to_dict
  try:
    stored = json.loads((folder / "config.json").read_text())["config"]
  except (OSError, ValueError, KeyError):
    return False
  return (folder / "final.json").is_file() and stored == json.loads(json.dumps(config_to_dict(cfg)))


RECIPES: dict[str, Recipe] = {"gmf": GMFRecipe(), "mlp": MLPRecipe(), "neumf": NeuMFRecipe(),
                              "neumf-pre": NeuMFPretrainedRecipe()}
RECIPES["ncf"] = RECIPES["neumf"]          # alias: the same recipe object (same jit cache entry)
