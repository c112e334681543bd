"""ItemKNN: similarities, kept neighbours and scores against brute force; beats popularity."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from xplo_jax.evaluate import rank_topk
from xplo_jax.models import ease, itemknn
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg



def brute_sim(x: np.ndarray, i: int, j: int, kind: str) -> float:
  ui, uj = set(np.flatnonzero(x[:, i])), set(np.flatnonzero(x[:, j]))
  inter = len(ui & uj)
  if kind == "cosine":
    den = math.sqrt(float(len(ui)) * float(len(uj)))
  else:
    den = float(len(ui | uj))
  return inter / den if den > 0 else 0.0


def brute_neighbours(x: np.ndarray, i: int, k: int, kind: str) -> list[tuple[int, float]]:
  """Item i's k most similar other items with similarity > 0; ties: smaller id."""
  cands = [(j, brute_sim(x, i, j, kind)) for j in range(x.shape[1]) if j != i]
  cands = [(j, s) for j, s in cands if s > 0]
  return sorted(cands, key=lambda t: (-round(t[1], 12), t[0]))[:k]


@pytest.mark.parametrize("kind", ["cosine", "jaccard"])
@pytest.mark.parametrize("k", [1, 3, 50])
def test_weights_equal_brute_force(kind, k):
  rng = np.random.default_rng(3)
  x = (rng.random((14, 12)) < 0.3).astype(np.float32)
  x[:, 5] = 0                                   # an item nobody has: no similarity, no neighbours
  w = itemknn.knn_weights(sp.csr_matrix(x), k, kind, block_bytes=8 * 12 * 5)   # 5 rows per block
  ref = np.zeros_like(w)
  for i in range(x.shape[1]):
    for j, s in brute_neighbours(x, i, k, kind):
      ref[j, i] = s
  np.testing.assert_allclose(w, ref, rtol=1e-6, atol=0)
  assert np.array_equal(w != 0, ref != 0)       # the same neighbours, ties included
  if k < 50:
    assert np.all((w > 0).sum(axis=0) <= k)


def test_scores_equal_brute_force_sum_over_neighbours():
  rng = np.random.default_rng(4)
  x = (rng.random((9, 10)) < 0.35).astype(np.float32)
  k = 3
  w = itemknn.knn_weights(sp.csr_matrix(x), k, "cosine")
  lists = ease.train_lists(sp.csr_matrix(x), width_multiple=8)
  scorer = itemknn.RECIPE.scorer(None, None, item_chunk=4)
  params = {"W": jnp.asarray(w)}
  users = np.arange(9)
  state = scorer.prepare(params, {kk: jnp.asarray(v[users]) for kk, v in lists.items()})
  got = np.asarray(scorer.score(params, state, jnp.arange(10)))
  ref = np.zeros((9, 10))
  for u in range(9):
    for i in range(10):
      ref[u, i] = sum(s for j, s in brute_neighbours(x, i, k, "cosine") if x[u, j] > 0)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  # Through the evaluator's ranking (train items excluded), chunked.
  excl, excl_len = lists["a1_ids"], lists["a1_len"]
  top = np.asarray(rank_topk(scorer, params, {kk: jnp.asarray(v) for kk, v in lists.items()}, jnp.asarray(excl),
                             jnp.asarray(excl_len), k=3, n_items=10))
  for u in range(9):
    masked = np.where(x[u] > 0, -np.inf, ref[u])
    want = np.lexsort((np.arange(10), -masked))[:3]
    assert np.allclose(masked[top[u]], masked[want])


def test_itemknn_beats_popularity_on_planted_data(tiny_data, tmp_path):
  res = train_and_evaluate(small_cfg("model.name=itemknn"), tmp_path / "k", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert res.test["ndcg@20"] > 1.5 * pop.test["ndcg@20"], (res.test["ndcg@20"], pop.test["ndcg@20"])
  assert res.test["recall@20"] > 1.5 * pop.test["recall@20"], (res.test["recall@20"], pop.test["recall@20"])
  jac = train_and_evaluate(small_cfg("model.name=itemknn", "baseline.itemknn_similarity=jaccard"),
                           tmp_path / "j", tiny_data, progress=False)
  assert jac.test["ndcg@20"] > 1.5 * pop.test["ndcg@20"], (jac.test["ndcg@20"], pop.test["ndcg@20"])
