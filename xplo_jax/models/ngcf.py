"""NGCF: Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019; baselines.md §4).

Graph: the symmetric-normalized L = D^{−½} A D^{−½} of the bipartite TRAIN graph
(the paper's eq. 8; ``graph_utils``), not the code's row-normalized D̃⁻¹(A + I).

Propagation, for l = 1..L over all |U| + |V| nodes, the paper's matrix form (eq. 7–8):

    E⁽ˡ⁾ = LeakyReLU_{0.2}( (L + I) E⁽ˡ⁻¹⁾ W₁⁽ˡ⁾ + ((L E⁽ˡ⁻¹⁾) ⊙ E⁽ˡ⁻¹⁾) W₂⁽ˡ⁾ )
    E⁽ˡ⁾ ← message dropout(E⁽ˡ⁾)                      (training only; rate ``message_dropout``)
    stored layer l: E⁽ˡ⁾ / max(‖E⁽ˡ⁾‖₂ row-wise, 1e-6)  (the code's ``tf.math.l2_normalize``)

final e* = [E⁽⁰⁾ ‖ Ê⁽¹⁾ ‖ … ‖ Ê⁽ᴸ⁾] (Ê = the row-normalized copies; E⁽⁰⁾ is not
normalized; the unnormalized E⁽ˡ⁾ feeds layer l + 1), score ŷ_ui = e*_uᵀ e*_i.

Objective (the code's ``create_bpr_loss``), per batch of users, one positive i
(uniform over the user's train items) and one negative j (uniform over the rest):

    L = mean_b softplus(ŷ_uj − ŷ_ui) + λ · Σ_b ½(‖e*_u‖² + ‖e*_i‖² + ‖e*_j‖²) / B,

with the final (dropped-out) embeddings in the L2 term, λ = ``baseline.gcn_reg``,
B = the number of real users of the batch. Adam at ``train.learning_rate``.

Defaults (README commands, ``baseline.*``): embedding 64, layers [64, 64, 64],
λ = 1e-5, message dropout 0.1 per layer, node (edge) dropout 0.1, Xavier
initialization. The README trains with batch 1024 and lr 1e-4 (Gowalla) / 5e-4
(Amazon-book); here batch size and lr are the shared ``train.*`` settings.

Readings of the paper and the code:

* Propagation: the paper's matrix form (one LeakyReLU over the sum, no biases) and
  not the code's two-bias form (LReLU(Â E W_gc + b_gc) + LReLU((E ⊙ Â E) W_bi +
  b_bi) with Â = D̃⁻¹(A + I)). The paper's form is the model XploVAE cites, and it
  goes with the paper's L: the code's Â carries the self-loop inside both terms
  (its bi-term has an E ⊙ E part the paper's has not), so mixing the code's layer
  with the paper's L would be neither. LeakyReLU slope 0.2 (``tf.nn.leaky_relu``).
* Per-layer L2 row normalization of the stored copies: from the code (the paper
  does not mention it). It keeps the concatenated layers on one scale, so no layer
  dominates the inner product; the published numbers were produced with it.
* Message dropout: the code's ``tf.nn.dropout`` on each layer's output (kept
  entries scaled by 1/(1 − p)) — before the normalization, so the dropped E⁽ˡ⁾ also
  feeds the next layer. The paper describes dropping messages in eq. 6; the code
  drops the aggregated output.
* Node dropout: as the code, not the paper: each nonzero of the sparse L is dropped
  with probability p and the rest rescaled by 1/(1 − p) (``_dropout_sparse``),
  one mask per step for all layers; the README's "node dropout 0.1" is a drop
  rate (the code passes 1 − p as ``keep_prob``). Always on in training here (the
  code needs ``--node_dropout_flag 1``); set ``baseline.ngcf_edge_dropout=0`` for
  the code's default.
* Both dropouts are off at evaluation (the code feeds zeros to both placeholders).
* Xavier = TF ``xavier_initializer()``: Glorot uniform, limit √(6 / (fan_in +
  fan_out)) with fan_in, fan_out = the two dimensions, also for the [|U|, 64] and
  [|V|, 64] embedding tables.
* Sampling: the shared loop's user batches (each user once per epoch) instead of
  the code's 1024 users drawn per step; see ``graph_utils.GCNRecipe``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from xplo_jax.config import Config
from xplo_jax.models import graph_utils as gu
from xplo_jax.preprocess.shards import SubgraphData

__all__ = ["NGCF", "NGCFRecipe", "RECIPE", "l2_normalize_rows"]

LEAKY_SLOPE = 0.2


def l2_normalize_rows(x: jax.Array) -> jax.Array:
  """x / √max(Σ x², 1e-12) row-wise, as ``tf.math.l2_normalize(x, axis=1)``."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
  keep = 1.0 - rate
  return jnp.where(jax.random.bernoulli(key, keep, x.shape), x / keep, jnp.zeros_like(x))


class NGCF(nnx.Module):
  """The NGCF model over the fixed train graph.

  Args:
    graph: the normalized train graph (``graph_utils.normalized_bipartite``).
    embed_dim: D, the width of every layer.
    layers: L, propagation layers (the final representation has D·(L + 1) dims).
    message_dropout: drop rate on each layer's output (training only).
    edge_dropout: drop rate on the nonzeros of L (training only).
    kernel: 'auto', 'dense' or 'sparse' (``graph_utils``).
    dense_budget_mb: memory bound of the dense kernel under 'auto'.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, graph: gu.BipartiteGraph, *, embed_dim: int = 64, layers: int = 3,
               message_dropout: float = 0.1, edge_dropout: float = 0.1, kernel: str = "auto",
               dense_budget_mb: float = 1024.0, rngs: nnx.Rngs):
    if layers < 0:
      raise ValueError(f"layers must be >= 0, got {layers}")
    for name, p in (("message_dropout", message_dropout), ("edge_dropout", edge_dropout)):
      if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {p}")
    self.n_users, self.n_items = graph.n_users, graph.n_items
    self.embed_dim, self.layers = int(embed_dim), int(layers)
    self.message_dropout, self.edge_dropout = float(message_dropout), float(edge_dropout)
    self.adjacency = gu.Adjacency(graph, kernel=kernel, edge_dropout=edge_dropout, dense_budget_mb=dense_budget_mb)
    xavier = jax.nn.initializers.glorot_uniform()
    per_layer = jax.nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=(0,))
    D = self.embed_dim
    self.user_embedding = nnx.Param(xavier(rngs.params(), (self.n_users, D)))
    self.item_embedding = nnx.Param(xavier(rngs.params(), (self.n_items, D)))
    self.w1 = nnx.Param(per_layer(rngs.params(), (self.layers, D, D)))      # W₁⁽ˡ⁾, l = 1..L
    self.w2 = nnx.Param(per_layer(rngs.params(), (self.layers, D, D)))      # W₂⁽ˡ⁾

  def ego(self) -> tuple[jax.Array, jax.Array]:
    """E⁽⁰⁾: ([|U|, D], [|V|, D])."""
    return self.user_embedding[...], self.item_embedding[...]

  def embeddings(self, *, key: Optional[jax.Array] = None, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Final representations e* of all users and items (module docstring).

    Args:
      key: PRNG key for the dropouts (needed when ``train`` and a rate > 0).
      train: apply edge and message dropout.

    Returns:
      ([|U|, D·(L+1)], [|V|, D·(L+1)]).
    """
    e = jnp.concatenate(self.ego(), axis=0)
    drop_edges = train and self.edge_dropout > 0
    drop_msgs = train and self.message_dropout > 0
    if (drop_edges or drop_msgs) and key is None:
      raise ValueError("NGCF.embeddings(train=True) needs a key for dropout")
    k_edge, k_msg = jax.random.split(key) if key is not None else (None, None)
    weights = self.adjacency.dropped(k_edge, self.edge_dropout) if drop_edges else None
    w1, w2 = self.w1[...], self.w2[...]
    stored = [e]
    for l in range(self.layers):
      side = self.adjacency(e, weights)                              # L E⁽ˡ⁻¹⁾
      e = jax.nn.leaky_relu((side + e) @ w1[l] + (side * e) @ w2[l], negative_slope=LEAKY_SLOPE)
      if drop_msgs:
        e = _dropout(jax.random.fold_in(k_msg, l), e, self.message_dropout)
      stored.append(l2_normalize_rows(e))
    final = jnp.concatenate(stored, axis=1)
    return final[:self.n_users], final[self.n_users:]


@dataclasses.dataclass(frozen=True)
class NGCFRecipe(gu.GCNRecipe):
  """NGCF trained with BPR in the shared loop (L2 on the final embeddings)."""
  name: ClassVar[str] = "ngcf"
  reg_on: ClassVar[str] = "final"

  def build(self, cfg: Config, data: SubgraphData, rngs: nnx.Rngs) -> NGCF:
    b = cfg.baseline
    graph = gu.normalized_bipartite(data.split.train, data.n_users, data.n_items)
    return NGCF(graph, embed_dim=b.gcn_embed_dim, layers=b.gcn_layers, message_dropout=b.ngcf_message_dropout,
                edge_dropout=b.ngcf_edge_dropout, dense_budget_mb=cfg.model.dense_conv_budget_mb, rngs=rngs)


RECIPE = NGCFRecipe()
