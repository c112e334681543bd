"""Shared pieces of the graph baselines (NGCF, LightGCN): the normalized bipartite
adjacency and its product, edge dropout, BPR sampling, the BPR objective and the
recipe both models train and score with.

The graph has |U| + |V| nodes (users first, then items) and the TRAIN pairs as
edges, A = [[0, R], [Rᵀ, 0]] with R ∈ {0,1}^{|U|×|V|}. Both models propagate with
the symmetric normalization of the NGCF paper (eq. 8) and of LightGCN (eq. 7):

    L = D^{−½} A D^{−½},      L_{u, i} = L_{i, u} = 1 / √(|N_u| |N_i|),

no self-loops (NGCF adds the identity explicitly in its layer; LightGCN has
none). A node without train edges has a zero row (its 1/√0 is taken as 0, as the
LightGCN code's ``d_inv[isinf] = 0``).

Two kernels compute L E for E ∈ R^{(|U|+|V|)×D}, same values and gradients:

* ``dense``: R̃ = the normalized R as a dense [|U|, |V|] block; L E = [R̃ E_V ; R̃ᵀ E_U],
  two GEMMs. O(|U|·|V|) memory, BLAS speed.
* ``sparse``: a ``jax.experimental.sparse.BCOO`` [N, N] matrix with the 2·|E| nonzeros
  of L (both directions), ``L @ E``. O(|E|·D) memory.

``auto`` takes ``dense`` while the block (and, with edge dropout, its two per-step
masked copies) fits a memory budget. Measured on the 2-core CPU at ML-100K size
(synthetic ml-100k: 943 × 1,675, 71,917 train edges; D = 64, fwd + bwd of 3
layers; three runs of 30–40 calls on a machine shared with other jobs, min /
median ms): dense 30–64 / 40–91, BCOO 38–49 / 48–88, ``segment_sum`` over two
sorted edge lists 43–53 / 52–77; with edge dropout (a mask drawn every call, one
run) dense + scatter 45 / 51, BCOO 42 / 54, segment_sum 48 / 62. The three are
within the machine's noise of each other there (no kernel is clearly faster), so
the dense block is kept for small graphs (plain GEMMs) and BCOO, the sparse API,
for graphs whose block does not fit; segment_sum is not kept.

Edge dropout (NGCF's "node dropout" as its code implements it, ``_dropout_sparse``):
each nonzero of L — (u, i) and (i, u) independently — is kept with probability
1 − p and the kept ones are rescaled by 1 / (1 − p); one mask per step, shared by
all layers (the code builds the dropped Â once per ``sess.run``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import sparse

from xplo_jax import losses
from xplo_jax.config import Config
from xplo_jax.data.types import Pairs
from xplo_jax.evaluate import Scorer
from xplo_jax.recipes import Recipe

__all__ = ["GraphArray", "BipartiteGraph", "normalized_bipartite", "choose_graph_kernel", "Adjacency",
           "sample_positive", "sample_negative", "bpr_objective", "GCNStatic", "GCNRecipe"]


class GraphArray(nnx.Variable):
  """Non-trainable graph arrays (edge lists, normalized weights, the dense block)."""


@dataclasses.dataclass(frozen=True)
class BipartiteGraph:
  """The normalized train graph on the host.

  Attributes:
    n_users, n_items: |U|, |V|.
    user, item: [E] int32 the distinct train edges, sorted by (user, item).
    weight: [E] float32 1 / √(|N_u| |N_i|).
  """
  n_users: int
  n_items: int
  user: np.ndarray
  item: np.ndarray
  weight: np.ndarray

  @property
  def n_edges(self) -> int:
    return int(len(self.user))

  def dense_block(self) -> np.ndarray:
    """R̃: [|U|, |V|] float32 with R̃[u, i] = L[u, |U| + i]."""
    r = np.zeros((self.n_users, self.n_items), np.float32)
    r[self.user, self.item] = self.weight
    return r


def normalized_bipartite(pairs: Pairs, n_users: int, n_items: int) -> BipartiteGraph:
  """The symmetric-normalized bipartite graph of ``pairs`` (duplicates counted once).

  Args:
    pairs: train (user, item) pairs.
    n_users, n_items: node counts (users or items without pairs get no edges).
  """
  key = np.unique(np.asarray(pairs.user, np.int64) * n_items + np.asarray(pairs.item, np.int64))
  user = (key // n_items).astype(np.int32)
  item = (key % n_items).astype(np.int32)
  deg_u = np.bincount(user, minlength=n_users).astype(np.float64)
  deg_i = np.bincount(item, minlength=n_items).astype(np.float64)
  weight = (1.0 / np.sqrt(deg_u[user] * deg_i[item])).astype(np.float32)
  return BipartiteGraph(n_users=n_users, n_items=n_items, user=user, item=item, weight=weight)


def choose_graph_kernel(kernel: str, n_users: int, n_items: int, edge_dropout: float, budget_mb: float) -> str:
  """'dense' while the [|U|, |V|] block (×3 with edge dropout: two masked copies per step) fits ``budget_mb``."""
  if kernel in ("dense", "sparse"):
    return kernel
  if kernel != "auto":
    raise ValueError(f"graph kernel must be auto, dense or sparse, got {kernel!r}")
  need = (3 if edge_dropout > 0 else 1) * n_users * n_items * 4
  budget = budget_mb if budget_mb > 0 else 1024.0      # 0 = the default (dense and BCOO measured alike)
  return "dense" if need <= budget * 2 ** 20 else "sparse"


class Adjacency(nnx.Module):
  """L = D^{−½} A D^{−½} of the bipartite train graph, as an operator on node embeddings.

  Args:
    graph: from ``normalized_bipartite``.
    kernel: 'auto', 'dense' or 'sparse' (module docstring).
    edge_dropout: the drop rate p of ``dropped`` (only sizes the 'auto' choice here).
    dense_budget_mb: memory bound of the dense kernel under 'auto'.
  """

  def __init__(self, graph: BipartiteGraph, *, kernel: str = "auto", edge_dropout: float = 0.0,
               dense_budget_mb: float = 1024.0):
    self.n_users, self.n_items = int(graph.n_users), int(graph.n_items)
    self.kernel = choose_graph_kernel(kernel, self.n_users, self.n_items, edge_dropout, dense_budget_mb)
    self.user = GraphArray(jnp.asarray(graph.user))
    self.item = GraphArray(jnp.asarray(graph.item))
    self.weight = GraphArray(jnp.asarray(graph.weight))
    self.block = GraphArray(jnp.asarray(graph.dense_block())) if self.kernel == "dense" else None

  def dropped(self, key: jax.Array, rate: float) -> tuple[jax.Array, jax.Array]:
    """Edge-dropped weights of both directions: ([E] of L[u, i], [E] of L[i, u]).

    Each entry is kept with probability 1 − rate and then divided by 1 − rate,
    independently for the two directions (they are two nonzeros of the sparse L).
    """
    w = self.weight[...]
    keep = 1.0 - rate
    k_ui, k_iu = jax.random.split(key)
    scale = jnp.float32(1.0 / keep)
    m_ui = jax.random.bernoulli(k_ui, keep, w.shape).astype(jnp.float32) * scale
    m_iu = jax.random.bernoulli(k_iu, keep, w.shape).astype(jnp.float32) * scale
    return w * m_ui, w * m_iu

  def __call__(self, e: jax.Array, weights: Optional[tuple[jax.Array, jax.Array]] = None) -> jax.Array:
    """L E: [|U| + |V|, D] → [|U| + |V|, D].

    Args:
      e: node embeddings, users first.
      weights: (w_ui, w_iu) from ``dropped``; None = the exact L.
    """
    nu, nv = self.n_users, self.n_items
    user, item = self.user[...], self.item[...]
    if self.kernel == "dense":
      if weights is None:
        r_ui = r_iu = self.block[...]
      else:                         # scatter the kept entries into fresh blocks (no gradient flows here)
        zeros = jnp.zeros((nu, nv), e.dtype)
        r_ui = zeros.at[user, item].set(weights[0], unique_indices=True)
        r_iu = zeros.at[user, item].set(weights[1], unique_indices=True)
      return jnp.concatenate([r_ui @ e[nu:], r_iu.T @ e[:nu]], axis=0)
    w_ui, w_iu = (self.weight[...], self.weight[...]) if weights is None else weights
    rows = jnp.concatenate([user, nu + item])
    cols = jnp.concatenate([nu + item, user])
    mat = sparse.BCOO((jnp.concatenate([w_ui, w_iu]), jnp.stack([rows, cols], axis=1)),
                      shape=(nu + nv, nu + nv), unique_indices=True)
    return mat @ e


# ----------------------------------------------------------------------------- BPR sampling and loss

def sample_positive(key: jax.Array, a1_ids: jax.Array, a1_len: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One train item per user, uniform over the user's train list.

  Args:
    key: PRNG key.
    a1_ids: [B, W] int32 padded train item ids; a1_len [B] real entries per row.

  Returns:
    (pos [B] int32, has [B] bool: the user has at least one train item).
  """
  u = jax.random.uniform(key, a1_len.shape)
  n = a1_len.astype(jnp.int32)
  slot = jnp.minimum(jnp.floor(u * n.astype(jnp.float32)).astype(jnp.int32), jnp.maximum(n - 1, 0))
  pos = jnp.take_along_axis(a1_ids, slot[:, None], axis=1)[:, 0]
  return pos.astype(jnp.int32), n > 0


def sample_negative(key: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One item per user, uniform over the items that are NOT its train items.

  Args:
    key: PRNG key.
    labels: [B, |V|] uint8 label rows (label 0 = train item, see ``preprocess.labels``).

  Returns:
    (neg [B] int32, has [B] bool: the user has at least one non-train item).
  """
  ids, w, _ = losses.sample_zeros(key, labels, losses.stratum_plan(1, "uniform", (0,), 1))
  return ids[:, 0], w[:, 0] > 0


def bpr_objective(e_user: jax.Array, e_pos: jax.Array, e_neg: jax.Array, r_user: jax.Array, r_pos: jax.Array,
                  r_neg: jax.Array, valid: jax.Array, reg: float) -> tuple[jax.Array, dict]:
  """BPR with the NGCF / LightGCN codes' L2 term, over the valid rows of a batch.

      L = (1/n) Σ_b softplus(ŷ_bj − ŷ_bi) + λ · (1/n) Σ_b ½ (‖r_u‖² + ‖r_i‖² + ‖r_j‖²),

  ŷ = e_uᵀ e_item, n = number of valid rows; softplus(ŷ_j − ŷ_i) = −log σ(ŷ_i − ŷ_j).
  The codes' ``tf.nn.l2_loss(x) / batch_size`` is ½‖x‖²_F / B.

  Args:
    e_user, e_pos, e_neg: [B, F] embeddings that score (final representations).
    r_user, r_pos, r_neg: [B, G] embeddings that are regularized (NGCF: the final
      ones; LightGCN: layer 0).
    valid: [B] bool or float rows that count.
    reg: λ.

  Returns:
    (loss scalar, {"bpr": ..., "l2": ...}).
  """
  v = valid.astype(jnp.float32)
  n = jnp.maximum(v.sum(), 1.0)
  pos = jnp.sum(e_user * e_pos, axis=-1)
  neg = jnp.sum(e_user * e_neg, axis=-1)
  bpr = jnp.sum(v * jax.nn.softplus(neg - pos)) / n
  sq = jnp.sum(r_user ** 2, axis=-1) + jnp.sum(r_pos ** 2, axis=-1) + jnp.sum(r_neg ** 2, axis=-1)
  l2 = jnp.sum(v * 0.5 * sq) / n
  return bpr + reg * l2, {"bpr": bpr, "l2": l2}


# ----------------------------------------------------------------------------- the shared recipe

@dataclasses.dataclass(frozen=True)
class GCNStatic:
  learning_rate: float
  reg: float
  samples: int = 1


@dataclasses.dataclass(frozen=True)
class GCNRecipe(Recipe):
  """Training and scoring shared by NGCF and LightGCN.

  A model provides ``embeddings(key=None, train=False) -> (E_U [|U|, F], E_V [|V|, F])``
  (the final representations, propagated over all nodes) and ``ego() -> (E⁽⁰⁾_U,
  E⁽⁰⁾_V)``; ``reg_on`` says which of the two the L2 term reads.

  Batches (the shared loop: users in a seeded permutation, the last batch padded):
  per user ``baseline.bpr_samples_per_user`` = S triples, each a positive uniform
  over its train list and a negative uniform over its non-train items, drawn inside
  the jit from ``key``. One "epoch" of the shared loop is therefore |U|·S triples;
  the reference codes' epoch is |train pairs| triples (n_train // batch + 1
  batches of sampled users): S = 32 is near ML-100K's mean train degree (43).

  Scoring: ``prepare`` propagates over all nodes once per evaluation batch (with
  dropout off) and keeps the batch users' rows and the whole item table; ``score``
  is the inner product with an item chunk. Nothing is cached across batches: a
  cache would be state outside the pytree, and the shared evaluator calls
  ``prepare`` per batch.
  """
  reg_on: ClassVar[str] = "final"

  def static(self, cfg: Config) -> GCNStatic:
    return GCNStatic(learning_rate=cfg.train.learning_rate, reg=cfg.baseline.gcn_reg,
                     samples=cfg.baseline.bpr_samples_per_user)

  def batch_fields(self) -> tuple[str, ...]:
    return ("users", "a1_ids", "a1_len", "labels")

  def sample(self, batch: dict, key: jax.Array, samples: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(pos [B, S], neg [B, S], valid [B, S] bool): S independent triples per user.

    The propagation over all nodes dominates a step, so S > 1 triples per user cost
    little and bring an epoch of the shared loop (|U|·S triples) near the reference
    codes' epoch (|train pairs| triples).
    """
    k_pos, k_neg = jax.random.split(key)
    keys = jax.random.split(k_pos, samples)
    pos, has_pos = jax.vmap(lambda k: sample_positive(k, batch["a1_ids"], batch["a1_len"]))(keys)
    ids, w, _ = losses.sample_zeros(k_neg, batch["labels"], losses.stratum_plan(1, "uniform", (0,), samples))
    valid = batch["valid"].astype(bool)[:, None] & has_pos.T & (w > 0)
    return pos.T, ids, valid

  def objective(self, model, users: jax.Array, pos: jax.Array, neg: jax.Array, valid: jax.Array, reg: float,
                *, key: Optional[jax.Array] = None, train: bool = False) -> tuple[jax.Array, dict]:
    """The loss at fixed samples (the model propagates with dropout when ``train``)."""
    f_u, f_v = model.embeddings(key=key, train=train)
    e_u, e_p, e_n = f_u[users], f_v[pos], f_v[neg]
    if self.reg_on == "final":
      r_u, r_p, r_n = e_u, e_p, e_n
    else:
      g_u, g_v = model.ego()
      r_u, r_p, r_n = g_u[users], g_v[pos], g_v[neg]
    return bpr_objective(e_u, e_p, e_n, r_u, r_p, r_n, valid, reg)

  def loss(self, model, batch: dict, step, key, st: GCNStatic):
    k_sample, k_model = jax.random.split(key)
    pos, neg, valid = self.sample(batch, k_sample, st.samples)
    users = jnp.broadcast_to(batch["users"][:, None], pos.shape)
    return self.objective(model, users.reshape(-1), pos.reshape(-1), neg.reshape(-1), valid.reshape(-1), st.reg,
                          key=k_model, train=True)

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"users": users.astype(np.int32)}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    def prepare(pr, inputs):
      m = nnx.merge(graphdef, *pr)
      f_u, f_v = m.embeddings(train=False)
      return f_u[inputs["users"]], f_v

    def score(pr, state, items):
      e_u, f_v = state
      return e_u @ jnp.take(f_v, items, axis=0).T

    return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)
