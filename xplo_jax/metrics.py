"""Ranking metrics (paper §5.1.3; DESIGN.md §3). Pure, jittable, per user.

Conventions, pinned by tests:

* ``hits`` [B, K] is 1 where the item at rank k (1-based k = column + 1) of the
  user's ranked list w is in the held-out set I_u; ``n_rel`` [B] = |I_u|.
* Users with |I_u| = 0 get NaN-free zeros here; callers average only over users
  with ≥ 1 held-out item (``valid`` mask).
* Train items (and valid items, when testing) are excluded from w before ranking.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["recall_at_k", "hit_fraction_at_k", "ndcg_at_k", "pild_at_k", "coverage_at_k"]


def recall_at_k(hits, n_rel, k: int):
  """Recall@K = Σ_{r≤K} 1[w_r ∈ I_u] / min(K, |I_u|)   (normalized, as Mult-VAE).

  Args:
    hits: [B, ≥K] 0/1; n_rel: [B] number of held-out items.

  Returns:
    [B] float32.
  """
  h = jnp.sum(hits[:, :k].astype(jnp.float32), axis=1)
  return h / jnp.maximum(jnp.minimum(k, n_rel).astype(jnp.float32), 1.0)


def hit_fraction_at_k(hits, n_rel, k: int):
  """Plain recall: Σ_{r≤K} 1[w_r ∈ I_u] / |I_u| (reported beside the normalized Recall@K)."""
  h = jnp.sum(hits[:, :k].astype(jnp.float32), axis=1)
  return h / jnp.maximum(n_rel.astype(jnp.float32), 1.0)


def ndcg_at_k(hits, n_rel, k: int):
  """NDCG@K with binary gains: DCG = Σ_{r≤K} 1[w_r ∈ I_u] / log₂(r + 1), divided by
  the ideal DCG of min(K, |I_u|) relevant items at the top."""
  disc = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
  dcg = jnp.sum(hits[:, :k].astype(jnp.float32) * disc[None, :], axis=1)
  ideal_n = jnp.minimum(k, n_rel)
  idcg = jnp.sum(jnp.where(jnp.arange(k)[None, :] < ideal_n[:, None], disc[None, :], 0.0), axis=1)
  return dcg / jnp.maximum(idcg, 1e-12)


def pild_at_k(jaccard, k: int):
  """PILD@K = 2 / (K (K − 1)) Σ_{i<j≤K} (1 − sim(w_i, w_j)), sim = Jaccard of the items'
  train user sets.

  Args:
    jaccard: [B, ≥K, ≥K] pairwise Jaccard similarity of each user's ranked items.

  Returns:
    [B] float32.
  """
  j = jaccard[:, :k, :k].astype(jnp.float32)
  upper = jnp.triu(jnp.ones((k, k), jnp.float32), 1)
  return jnp.sum((1.0 - j) * upper[None], axis=(1, 2)) * (2.0 / (k * (k - 1)))


def coverage_at_k(top_items, n_items: int, k: int, valid=None):
  """Item coverage: the fraction of the catalogue in at least one (valid) user's top K."""
  items = top_items[:, :k]
  weight = jnp.ones(items.shape, jnp.float32) if valid is None else jnp.broadcast_to(
      valid[:, None].astype(jnp.float32), items.shape)
  seen = jnp.zeros((n_items,), jnp.float32).at[items.reshape(-1)].max(weight.reshape(-1))
  return jnp.sum(seen) / n_items
