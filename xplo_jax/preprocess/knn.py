"""The item kNN graph: Jaccard similarity of train user sets, top-Kₙ per item.

J(i, j) = |U_i ∩ U_j| / |U_i ∪ U_j| = C_ij / (d_i + d_j − C_ij), C = EᵀE. Each item
keeps its Kₙ most similar other items, ties broken by the smaller item index, so
the graph is deterministic. Items with fewer than Kₙ neighbours of positive
similarity get padded slots: the id is the item itself and the mask is off (the
convolution ignores them). Kₙ ≥ |V| is clamped to |V| − 1 with a warning.

Equal rationals give bit-equal float64 quotients (IEEE division is correctly
rounded), so ties are detected exactly.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

__all__ = ["item_knn", "topk_rows", "clamp_knn"]


def clamp_knn(k: int, n_items: int) -> int:
  """Kₙ clamped to |V| − 1 (with a warning), at least 1."""
  if k >= n_items:
    new = max(1, n_items - 1)
    log.warning("K_n = %d >= |V| = %d items: clamped to %d neighbours per item", k, n_items, new)
    return new
  return k


def topk_rows(vals: np.ndarray, k: int) -> np.ndarray:
  """[b, k] column indices of the k largest entries per row, by (value desc, index asc)."""
  b, n = vals.shape
  if k >= n:
    return np.argsort(-vals, axis=1, kind="stable")[:, :k]
  neg = -vals
  part = np.argpartition(neg, k - 1, axis=1)[:, :k]
  kth = np.take_along_axis(neg, part, axis=1).max(axis=1, keepdims=True)   # boundary value
  better = neg < kth
  tie = neg == kth
  need = k - better.sum(axis=1, keepdims=True)
  sel = better | (tie & (np.cumsum(tie, axis=1) <= need))                 # ties: smallest indices
  idx = np.nonzero(sel)[1].reshape(b, k)                                 # ascending per row
  order = np.argsort(np.take_along_axis(neg, idx, axis=1), axis=1, kind="stable")
  return np.take_along_axis(idx, order, axis=1)


def item_knn(train: sp.csr_matrix, k: int, memory_bytes: float = 1e9,
             cooc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Top-k Jaccard neighbours of every item.

  Args:
    train: [n_users, n_items] 0/1 train matrix.
    k: neighbours per item (already clamped, < n_items).
    memory_bytes: budget for one block of similarity rows.
    cooc: the dense co-occurrence C = EᵀE when already computed (else built per block).

  Returns:
    ids: [n_items, k] int32 neighbour ids (padded slots hold the item itself).
    sim: [n_items, k] float32 Jaccard similarity (0 in padded slots).
    count: [n_items] int32 number of real neighbours (similarity > 0).
  """
  E = train.tocsr().astype(np.float64)
  n_items = E.shape[1]
  if not 1 <= k < n_items:
    raise ValueError(f"k must lie in [1, n_items - 1], got {k} for {n_items} items")
  Et = E.T.tocsr()
  deg = np.asarray(E.sum(axis=0)).ravel()
  ids = np.empty((n_items, k), np.int32)
  sim = np.empty((n_items, k), np.float32)
  count = np.empty(n_items, np.int32)
  block = int(max(1, min(n_items, memory_bytes // (40 * n_items))))
  for s in range(0, n_items, block):
    e = min(n_items, s + block)
    c = (Et[s:e] @ E).toarray() if cooc is None else cooc[s:e].astype(np.float64)   # [b, |V|] co-counts
    union = deg[s:e, None] + deg[None, :] - c
    with np.errstate(divide="ignore", invalid="ignore"):
      j = np.where(c > 0, c / union, 0.0)
    j[np.arange(e - s), np.arange(s, e)] = -1.0                           # never one's own neighbour
    top = topk_rows(j, k)
    val = np.take_along_axis(j, top, axis=1)
    real = val > 0
    rows = np.arange(s, e)[:, None]
    ids[s:e] = np.where(real, top, rows)
    sim[s:e] = np.where(real, val, 0.0)
    count[s:e] = real.sum(axis=1)
  return ids, sim, count
