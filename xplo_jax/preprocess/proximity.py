"""Second-order proximity E⁽²⁾ = E Eᵀ E, reachability, and the second-order row A₂.

DESIGN.md §2: E⁽²⁾_uv counts the length-3 walks user→item→user→item.
A₂ᵥ = 1 iff v ∉ A₁ and E⁽²⁾_uv ≥ τ_u, where in the default ``quantile`` mode τ_u is
the c₂-quantile (numpy's linear interpolation) of {E⁽²⁾_uv > 0 : v ∉ A₁}; the
``absolute`` mode uses a fixed count, ``topn`` the n largest; a cap keeps the
largest E⁽²⁾ (ties: smaller item index).

All products are computed per chunk of users, so memory is bounded by the chunk,
never by |U|·|V|. Two backends: while the item–item co-occurrence C = EᵀE fits the
memory budget, E⁽²⁾ = E_chunk C and reach₅ = E_chunk (C>0)² use dense item×item
matrices; beyond it, the products run through E and Eᵀ as sparse matrices.
Counts are exact: float32 is used only while every partial sum is an integer
below 2²⁴ (E⁽²⁾_uv ≤ nnz(E)), else float64.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

__all__ = ["GraphOps", "select_second_order", "second_order_rows"]

_F32_EXACT = 2 ** 24


class GraphOps:
  """Chunked products with the train matrix E ([|U|, |V|] 0/1 CSR).

  Args:
    train: the [n_users, n_items] 0/1 train matrix.
    memory_bytes: budget for the item×item matrices of the dense backend.
    backend: 'auto' (dense while 2 |V|² words fit in half the budget), 'dense' or 'sparse'.
  """

  def __init__(self, train: sp.csr_matrix, memory_bytes: float, backend: str = "auto"):
    self.E = train.tocsr().astype(np.float32)
    self.n_users, self.n_items = self.E.shape
    self.dtype = np.float32 if self.E.nnz < _F32_EXACT else np.float64
    itemsize = np.dtype(self.dtype).itemsize
    dense_bytes = (itemsize + 4 + 4) * self.n_items ** 2   # C, (C>0)², one temporary
    if backend == "auto":
      backend = "dense" if dense_bytes <= memory_bytes / 2 else "sparse"
    if backend not in ("dense", "sparse"):
      raise ValueError(f"backend must be auto, dense or sparse, got {backend!r}")
    self.backend = backend
    self.Et = self.E.T.tocsr()
    self.C2b = None                                 # (C>0)² > 0, built on first need (reach5)
    if backend == "dense":
      block = max(1, int(64e6 // max(1, 8 * self.n_items)))
      self.C = np.empty((self.n_items, self.n_items), dtype=self.dtype)
      for s in range(0, self.n_items, block):       # exact: entries are counts <= n_users
        self.C[s:s + block] = (self.Et[s:s + block] @ self.E).toarray()
    log.info("proximity backend: %s (|V| = %d, nnz(E) = %d, %s)", backend, self.n_items, self.E.nnz,
             np.dtype(self.dtype).name)

  def rows(self, start: int, stop: int) -> sp.csr_matrix:
    return self.E[start:stop]

  def second_order(self, rows: sp.csr_matrix) -> np.ndarray:
    """E⁽²⁾ for the users of ``rows``: [n, |V|] exact integer counts (as float)."""
    if self.backend == "dense":
      return np.asarray(rows.astype(self.dtype) @ self.C)
    ed = self.E if self.dtype == np.float32 else self.E.astype(self.dtype)
    uu = rows.astype(self.dtype) @ ed.T                # [n, |U|] shared-item counts
    return np.asarray((uu @ ed).toarray())

  def reach5(self, rows: sp.csr_matrix, reach3: np.ndarray) -> np.ndarray:
    """Items at distance <= 5 from each user of ``rows``: [n, |V|] bool."""
    if self.backend == "dense":
      if self.C2b is None:
        cb = (self.C > 0).astype(np.float32)
        self.C2b = np.empty_like(cb)
        block = max(1, int(64e6 // max(1, 4 * self.n_items)))
        for s in range(0, self.n_items, block):
          self.C2b[s:s + block] = (cb[s:s + block] @ cb) > 0
      return np.asarray(rows @ self.C2b) > 0
    r3 = sp.csr_matrix(reach3, dtype=np.float32)
    u4 = (r3 @ self.Et) > 0                           # users within distance 4
    return np.asarray((u4.astype(np.float32) @ self.E).toarray()) > 0


def select_second_order(e2_row: np.ndarray, a1_row: np.ndarray, mode: str, threshold: float,
                        cap: int) -> np.ndarray:
  """The sorted item ids of A₂ for one user.

  Args:
    e2_row: [|V|] E⁽²⁾ counts of the user.
    a1_row: [|V|] bool, the user's train items.
    mode: 'quantile' (threshold = c₂ level), 'absolute' (a count) or 'topn' (n).
    threshold: see ``mode``.
    cap: keep at most this many (largest E⁽²⁾, ties: smaller id); 0 = no cap.
  """
  cand = np.flatnonzero((e2_row > 0) & ~a1_row)
  if len(cand) == 0:
    return cand.astype(np.int32)
  vals = e2_row[cand].astype(np.float64)
  if mode == "quantile":
    sel = cand[vals >= np.quantile(vals, threshold)]
  elif mode == "absolute":
    sel = cand[vals >= threshold]
  elif mode == "topn":
    order = np.lexsort((cand, -vals))[: int(threshold)]
    sel = np.sort(cand[order])
  else:
    raise ValueError(f"unknown threshold mode {mode!r}")
  if cap and len(sel) > cap:
    v = e2_row[sel].astype(np.float64)
    sel = np.sort(sel[np.lexsort((sel, -v))[:cap]])
  return sel.astype(np.int32)


def second_order_rows(e2: np.ndarray, a1: np.ndarray, mode: str, threshold: float, cap: int) -> list[np.ndarray]:
  """``select_second_order`` for every row of a chunk."""
  return [select_second_order(e2[r], a1[r], mode, threshold, cap) for r in range(e2.shape[0])]
