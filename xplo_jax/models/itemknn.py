"""ItemKNN: item-based neighbourhood collaborative filtering (Sarwar et al. 2001; Deshpande & Karypis 2004).

Similarity of items i, j over their train user sets U_i, U_j (binary data):

    cosine:   sim(i, j) = |U_i ∩ U_j| / √(|U_i| · |U_j|)
    jaccard:  sim(i, j) = |U_i ∩ U_j| / |U_i ∪ U_j|

(``baseline.itemknn_similarity``, default cosine; sim(i, i) is never a
neighbour; an item without train users has similarity 0 to everything.) For
every target item i keep N_k(i), its k = ``baseline.itemknn_k`` (default 100)
most similar items j ≠ i with sim(i, j) > 0 — ties broken deterministically by
the smaller item id — and score

    score(u, i) = Σ_{j ∈ train(u) ∩ N_k(i)} sim(i, j)  =  (x_u W)_i,
    W[j, i] = sim(i, j) if j ∈ N_k(i) else 0.

Reading made: "keep the top k neighbours per item" is read as the neighbourhood
of the *target* item i (the classic item-based prediction of Sarwar et al.;
also RecBole's ``ItemKNN``, whose ``ComputeSimilarity('item')`` keeps the top-k
rows j of column i and predicts X·W), not the items the user has. No shrinkage
and no normalisation of the summed score (RecBole's defaults: shrink = 0).

Memory: similarities are computed in row blocks (≈ 64 MB of float64 each), W is
stored dense [|V|, |V|] float32 and scored as x_u W like EASE: practical to ~20k
items (1.6 GB of W).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.models.ease import linear_item_scorer
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["SIMILARITIES", "similarity_block", "topk_neighbours", "knn_weights", "ItemKNNRecipe", "RECIPE"]

SIMILARITIES = ("cosine", "jaccard")


def similarity_block(cooc: np.ndarray, deg_rows: np.ndarray, deg_all: np.ndarray, kind: str) -> np.ndarray:
  """Similarities of a block of items to all items from co-occurrence counts.

  Args:
    cooc: [b, |V|] |U_i ∩ U_j| for the block's items i (rows) and all items j.
    deg_rows: [b] |U_i|; deg_all: [|V|] |U_j|.
    kind: "cosine" or "jaccard".

  Returns:
    [b, |V|] float64 similarities (0 where the denominator is 0).
  """
  cooc = np.asarray(cooc, np.float64)
  if kind == "cosine":
    den = np.sqrt(deg_rows[:, None] * deg_all[None, :])
  elif kind == "jaccard":
    den = deg_rows[:, None] + deg_all[None, :] - cooc
  else:
    raise ValueError(f"baseline.itemknn_similarity: {kind!r} is not one of {', '.join(SIMILARITIES)}")
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, cooc / np.where(den > 0, den, 1.0), 0.0)


def topk_neighbours(sim: np.ndarray, k: int) -> np.ndarray:
  """[b, n] similarities → [b, n] bool mask of the k largest positive entries of each row.

  Ties go to the smaller column id (a stable sort of −sim); values equal to 12 decimals
  count as tied (e.g. 1/√4 and 2/√16 may differ in their last bit); entries ≤ 0 are
  never kept.
  """
  order = np.argsort(-np.round(sim, 12), axis=1, kind="stable")[:, :k]
  keep = np.zeros(sim.shape, bool)
  rows = np.arange(sim.shape[0])[:, None]
  keep[rows, order] = True
  return keep & (sim > 0)


def knn_weights(train: sp.csr_matrix, k: int, kind: str = "cosine", block_bytes: int = 64 << 20) -> np.ndarray:
  """W with W[j, i] = sim(i, j) for j ∈ N_k(i) (the module docstring's definition).

  Args:
    train: [|U|, |V|] 0/1 matrix.
    k: neighbours kept per target item.
    kind: "cosine" or "jaccard".
    block_bytes: memory of one float64 block of similarity rows.

  Returns:
    [|V|, |V|] float32 W (column i holds item i's neighbours); diag(W) = 0.
  """
  x = train.tocsc().astype(np.float64)
  n = x.shape[1]
  xt = x.T.tocsr()
  deg = np.asarray(x.sum(axis=0)).ravel()
  w = np.zeros((n, n), np.float32)
  step = max(1, block_bytes // (8 * max(1, n)))
  for s in range(0, n, step):
    e = min(n, s + step)
    sim = similarity_block((xt[s:e] @ x).toarray(), deg[s:e], deg, kind)
    sim[np.arange(e - s), np.arange(s, e)] = 0.0          # an item is not its own neighbour
    keep = topk_neighbours(sim, k)
    w[:, s:e] = np.where(keep, sim, 0.0).T                # column i = target item i
  return w


@dataclasses.dataclass(frozen=True)
class ItemKNNRecipe(Recipe):
  """Item-based kNN (see the module docstring)."""
  name: ClassVar[str] = "itemknn"
  trainable: ClassVar[bool] = False

  def fit(self, cfg: Config, data: SubgraphData) -> dict:
    b = cfg.baseline
    if b.itemknn_k < 1:
      raise ValueError(f"baseline.itemknn_k must be >= 1, got {b.itemknn_k}")
    w = knn_weights(data.split.train.csr(data.n_users, data.n_items), b.itemknn_k, b.itemknn_similarity)
    log.info("ItemKNN: %s similarity, k=%d, %d neighbour weights kept", b.itemknn_similarity,
             b.itemknn_k, int(np.count_nonzero(w)))
    return {"W": jnp.asarray(w)}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"a1_ids": arrays["a1_ids"][users], "a1_len": arrays["a1_len"][users]}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    return linear_item_scorer("W", item_chunk)


RECIPE = ItemKNNRecipe()
