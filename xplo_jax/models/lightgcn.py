"""LightGCN (He et al., SIGIR 2020): linear propagation on the train graph.

Graph: L = D^{−½} A D^{−½} of the bipartite TRAIN graph, no self-loops (paper eq. 7;
the code's ``getSparseGraph`` / ``norm_adj``; ``graph_utils``).

Propagation, for l = 1..L over all |U| + |V| nodes, no feature transform, no
nonlinearity, no dropout:

    E⁽ˡ⁾ = L E⁽ˡ⁻¹⁾,      e* = Σ_{l=0..L} α_l E⁽ˡ⁾ with α_l = 1 / (L + 1)   (eq. 8–9)

score ŷ_ui = e*_uᵀ e*_i.

Objective (eq. 15 as the codes write it), per batch of users with one positive i
(uniform over the user's train items) and one negative j (uniform over the rest):

    L = mean_b softplus(ŷ_uj − ŷ_ui) + λ · Σ_b ½(‖e⁽⁰⁾_u‖² + ‖e⁽⁰⁾_i‖² + ‖e⁽⁰⁾_j‖²) / B,

the L2 term on the batch's layer-0 (ego) embeddings, the only parameters;
λ = ``baseline.gcn_reg``, B = the batch's real users. Adam at ``train.learning_rate``.

Defaults: 64 dims (``baseline.gcn_embed_dim``), 3 layers (``baseline.gcn_layers``;
the paper's main comparison; its README commands use 4), Adam lr 1e-3 and batch
2048 in the codes (here the shared ``train.*``), λ = 1e-4 in the README commands
(``--regs [1e-4]``) — but ``baseline.gcn_reg`` is shared with NGCF (1e-5): set
``baseline.gcn_reg=1e-4`` for LightGCN's own default.

Readings:

* Initialization: Xavier (Glorot uniform over the [|U|, D] and [|V|, D] tables), as
  the paper ("initialized with the Xavier method") and the authors' TensorFlow
  code (``kuandeng/LightGCN``, ``tf.contrib.layers.xavier_initializer()``). The
  PyTorch port (``gusye1234/LightGCN-PyTorch``) uses N(0, 0.1²) instead, with the
  comment "random normal init seems to be a better choice when lightGCN actually
  don't use any non-linear activation function".
* No dropout: the codes' node dropout is off by default (TF ``node_dropout_flag``
  0, PyTorch ``--dropout 0``) and the paper does not use it.
* Sampling: the shared loop's user batches; see ``graph_utils.GCNRecipe``.
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

__all__ = ["LightGCN", "LightGCNRecipe", "RECIPE"]


class LightGCN(nnx.Module):
  """The LightGCN model over the fixed train graph.

  Args:
    graph: the normalized train graph (``graph_utils.normalized_bipartite``).
    embed_dim: D.
    layers: L (0 = matrix factorization with BPR).
    kernel: 'auto', 'dense' or 'sparse' (``graph_utils``).
    dense_budget_mb: memory bound of the dense kernel under 'auto'.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, graph: gu.BipartiteGraph, *, embed_dim: int = 64, layers: int = 3, kernel: str = "auto",
               dense_budget_mb: float = 1024.0, rngs: nnx.Rngs):
    if layers < 0:
      raise ValueError(f"layers must be >= 0, got {layers}")
    self.n_users, self.n_items = graph.n_users, graph.n_items
    self.embed_dim, self.layers = int(embed_dim), int(layers)
    self.adjacency = gu.Adjacency(graph, kernel=kernel, dense_budget_mb=dense_budget_mb)
    xavier = jax.nn.initializers.glorot_uniform()
    self.user_embedding = nnx.Param(xavier(rngs.params(), (self.n_users, self.embed_dim)))
    self.item_embedding = nnx.Param(xavier(rngs.params(), (self.n_items, self.embed_dim)))

  def ego(self) -> tuple[jax.Array, jax.Array]:
    """E⁽⁰⁾: ([|U|, D], [|V|, D])."""
    return self.user_embedding[...], self.item_embedding[...]

  def embeddings(self, *, key: Optional[jax.Array] = None, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """e* = mean of E⁽⁰⁾..E⁽ᴸ⁾ for all users and items: ([|U|, D], [|V|, D]).

    ``key`` and ``train`` are accepted for the shared recipe and unused (no dropout).
    """
    e = jnp.concatenate(self.ego(), axis=0)
    total = e
    for _ in range(self.layers):
      e = self.adjacency(e)
      total = total + e
    final = total / jnp.float32(self.layers + 1)
    return final[:self.n_users], final[self.n_users:]


@dataclasses.dataclass(frozen=True)
class LightGCNRecipe(gu.GCNRecipe):
  """LightGCN trained with BPR in the shared loop (L2 on the ego embeddings)."""
  name: ClassVar[str] = "lightgcn"
  reg_on: ClassVar[str] = "ego"

  def build(self, cfg: Config, data: SubgraphData, rngs: nnx.Rngs) -> LightGCN:
    b = cfg.baseline
    graph = gu.normalized_bipartite(data.split.train, data.n_users, data.n_items)
    return LightGCN(graph, embed_dim=b.gcn_embed_dim, layers=b.gcn_layers,
                    dense_budget_mb=cfg.model.dense_conv_budget_mb, rngs=rngs)


RECIPE = LightGCNRecipe()
