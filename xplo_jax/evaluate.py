"""Full-ranking evaluation over all items (paper §5.1.3; DESIGN.md §2 "Ranking", §3).

For each user with at least one held-out item: score every item, exclude the
user's train items (and valid items when testing) with −∞, take the top K with
``jax.lax.top_k`` — chunked over users (``user_batch``, padded to a static size)
and over items (a running top-K merged chunk by chunk), so memory is bounded by
[user_batch, item_chunk]. Ties go to the smaller item id. Each user's list
depends on that user's row only, so results do not depend on the batch size.

A model plugs in through a ``Scorer``: ``prepare(params, inputs)`` computes the
per-user state once (for XploVAE: z = μ, G(z) and every layer of S but the last)
and ``score(params, state, items)`` the scores of an item chunk, [B, C].
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from xplo_jax import metrics as M
from xplo_jax.data.types import Pairs
from xplo_jax.sharding import to_host

__all__ = ["Scorer", "rank_topk", "JaccardOracle", "evaluate_ranking", "padded_lists"]


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
  """How a model scores items for a batch of users (hashable by identity: build it once).

  Attributes:
    prepare: (params, inputs) -> state, once per user batch.
    score: (params, state, items [C]) -> [B, C] scores (higher is better).
    item_chunk: items scored per chunk (the whole catalogue when it is cheaper).
  """
  prepare: Callable[[Any, dict], Any]
  score: Callable[[Any, Any, jax.Array], jax.Array]
  item_chunk: int


@functools.partial(jax.jit, static_argnames=("scorer", "k", "n_items"))
def rank_topk(scorer: Scorer, params, inputs: dict, exclude_ids: jax.Array, exclude_len: jax.Array, *,
              k: int, n_items: int) -> jax.Array:
  """Top-k item ids per user: [B, k] int32, excluded items never returned.

  Args:
    scorer: the model's ``Scorer``.
    params: model parameters (replicated).
    inputs: per-user model inputs, leading axis B.
    exclude_ids: [B, We] item ids to exclude; exclude_len [B] real entries per row.
    k: list length; n_items: catalogue size.
  """
  state = scorer.prepare(params, inputs)
  b = exclude_ids.shape[0]
  c = min(scorer.item_chunk, n_items)
  n_chunks = -(-n_items // c)
  slot_ok = jnp.arange(exclude_ids.shape[1])[None, :] < exclude_len[:, None]
  rows = jnp.arange(b)[:, None]

  def body(carry, start):
    best_v, best_i = carry
    items = start + jnp.arange(c)
    real = items < n_items
    items = jnp.minimum(items, n_items - 1)
    sc = scorer.score(params, state, items).astype(jnp.float32)
    rel = exclude_ids - start
    hit = slot_ok & (rel >= 0) & (rel < c)
    sc = sc.at[rows, jnp.where(hit, rel, c)].set(-jnp.inf, mode="drop")
    sc = jnp.where(real[None, :], sc, -jnp.inf)
    v = jnp.concatenate([best_v, sc], axis=1)
    i = jnp.concatenate([best_i, jnp.broadcast_to(items[None, :], sc.shape)], axis=1)
    top_v, pos = jax.lax.top_k(v, k)
    return (top_v, jnp.take_along_axis(i, pos, axis=1)), None

  init = (jnp.full((b, k), -jnp.inf, jnp.float32), jnp.zeros((b, k), jnp.int32))
  (_, top_i), _ = jax.lax.scan(body, init, jnp.arange(n_chunks, dtype=jnp.int32) * c)
  return top_i


def padded_lists(csr: sp.csr_matrix, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
  """The column ids of ``rows`` of a CSR matrix as a [len(rows), width] padded array + lengths."""
  indptr, indices = csr.indptr, csr.indices
  lens = (indptr[rows + 1] - indptr[rows]).astype(np.int32)
  if lens.size and lens.max() > width:
    raise ValueError(f"a row has {lens.max()} entries, more than the width {width}")
  out = np.zeros((len(rows), width), np.int32)
  for r, u in enumerate(rows):
    out[r, :lens[r]] = indices[indptr[u]:indptr[u + 1]]
  return out, lens


class JaccardOracle:
  """Jaccard similarity of items' train user sets, for PILD.

  Dense co-occurrence while |V|² fits ``max_dense_items``², else sparse per user.
  """

  def __init__(self, train: sp.csr_matrix, max_dense_items: int = 12000):
    e = train.tocsc().astype(np.float32)
    self.deg = np.asarray(e.sum(axis=0)).ravel()
    self.et = e.T.tocsr()
    self.cooc = (self.et @ self.et.T).toarray() if e.shape[1] <= max_dense_items else None

  def pairwise(self, items: np.ndarray) -> np.ndarray:
    """[B, K] item ids → [B, K, K] Jaccard similarities (1 on the diagonal of seen items)."""
    if self.cooc is not None:
      inter = self.cooc[items[:, :, None], items[:, None, :]]
    else:
      inter = np.stack([(self.et[row] @ self.et[row].T).toarray() for row in items])
    d = self.deg[items]
    union = d[:, :, None] + d[:, None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(union > 0, inter / union, 0.0).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("ks",))
def _batch_metrics(hits, n_rel, jac, ks: tuple[int, ...]):
  out = {}
  for k in ks:
    out[f"recall@{k}"] = M.recall_at_k(hits, n_rel, k)
    out[f"hits@{k}"] = M.hit_fraction_at_k(hits, n_rel, k)
    out[f"ndcg@{k}"] = M.ndcg_at_k(hits, n_rel, k)
    out[f"pild@{k}"] = M.pild_at_k(jac, k)
  return out


def evaluate_ranking(scorer: Scorer, params, inputs_fn: Callable[[np.ndarray], dict], heldout: Pairs,
                     exclude: list[Pairs], n_users: int, n_items: int, *, ks=(10, 20, 50),
                     user_batch: int = 256, jaccard: Optional[JaccardOracle] = None,
                     put: Callable[[Any], Any] = jax.device_put, progress=None) -> dict[str, float]:
  """Averages the ranking metrics over users with at least one held-out item.

  Args:
    scorer, params: the model.
    inputs_fn: users [B] (host int array) -> the model's host inputs for them.
    heldout: the held-out pairs (valid or test).
    exclude: pairs never to recommend (train; train + valid when testing).
    n_users, n_items: sizes.
    ks: list lengths; the ranking is computed once at max(ks).
    user_batch: users per step (the last batch is padded, not sliced).
    jaccard: for PILD (omitted: PILD is not reported).
    put: host → device transfer (e.g. a sharded ``device_put``).
    progress: optional callable(n_done) for progress bars.

  Returns:
    {"recall@K", "hits@K", "ndcg@K", "pild@K", "coverage@K", "users"} as floats.
  """
  ks = tuple(sorted(ks))
  kmax = ks[-1]
  held = heldout.csr(n_users, n_items).astype(bool).tocsr()
  excl = sp.csr_matrix((n_users, n_items), dtype=bool)
  for p in exclude:
    excl = excl + p.csr(n_users, n_items).astype(bool)
  excl = excl.tocsr()
  excl.sort_indices()
  users = np.flatnonzero(np.diff(held.indptr) > 0)
  width = max(64, -(-int(np.diff(excl.indptr).max(initial=0)) // 64) * 64)
  sums = {}
  seen = {k: np.zeros(n_items, bool) for k in ks}
  held_keys = np.asarray(heldout.user, np.int64) * n_items + heldout.item
  held_keys.sort()
  n_rel_all = np.diff(held.indptr)
  for s in range(0, len(users), user_batch):
    chunk = users[s:s + user_batch]
    n_real = len(chunk)
    batch_users = np.concatenate([chunk, np.full(user_batch - n_real, chunk[0])]) if n_real < user_batch else chunk
    ex_ids, ex_len = padded_lists(excl, batch_users, width)
    top = to_host(rank_topk(scorer, params, put(inputs_fn(batch_users)), put(ex_ids), put(ex_len),
                            k=kmax, n_items=n_items))[:n_real]
    keys = chunk[:, None].astype(np.int64) * n_items + top
    pos = np.minimum(np.searchsorted(held_keys, keys), len(held_keys) - 1)
    hits = held_keys[pos] == keys
    jac = jaccard.pairwise(top) if jaccard is not None else np.zeros((n_real, kmax, kmax), np.float32)
    got = _batch_metrics(jnp.asarray(hits), jnp.asarray(n_rel_all[chunk]), jnp.asarray(jac), ks)
    for name, v in got.items():
      if name.startswith("pild") and jaccard is None:
        continue
      sums[name] = sums.get(name, 0.0) + float(np.sum(np.asarray(v, np.float64)))
    for k in ks:
      seen[k][top[:, :k].ravel()] = True
    if progress is not None:
      progress(n_real)
  n = max(1, len(users))
  out = {name: total / n for name, total in sums.items()}
  for k in ks:
    out[f"coverage@{k}"] = float(seen[k].mean())
  out["users"] = int(len(users))
  return dict(sorted(out.items()))
