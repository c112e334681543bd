"""Full-ranking evaluation: exclusion, chunking, batch-size independence, metric values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax.data.types import Pairs
from xplo_jax.evaluate import JaccardOracle, Scorer, evaluate_ranking, rank_topk


def table_scorer(chunk: int) -> Scorer:
  """A 'model' whose scores are a fixed [users, items] table (exact values, ties included)."""
  return Scorer(prepare=lambda table, inputs: table[inputs["users"]],
                score=lambda table, rows, items: jnp.take(rows, items, axis=1), item_chunk=chunk)


def random_problem(seed=0, nu=40, ni=57):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 6, (nu, ni)).astype(np.float32)      # many ties on purpose
  m = rng.random((nu, ni))
  train = Pairs(*map(lambda a: a.astype(np.int32), np.nonzero(m < 0.2)))
  valid = Pairs(*map(lambda a: a.astype(np.int32), np.nonzero((m >= 0.2) & (m < 0.25))))
  test = Pairs(*map(lambda a: a.astype(np.int32), np.nonzero((m >= 0.25) & (m < 0.35))))
  return scores, train, valid, test


def brute_rank(scores, exclude_sets, k):
  out = []
  for u in range(scores.shape[0]):
    cand = [i for i in range(scores.shape[1]) if i not in exclude_sets[u]]
    cand.sort(key=lambda i: (-scores[u, i], i))                  # ties: smaller item id first
    out.append(cand[:k])
  return np.array(out)


def sets(pairs: Pairs, nu):
  s = [set() for _ in range(nu)]
  for u, i in zip(pairs.user, pairs.item):
    s[u].add(int(i))
  return s


@pytest.mark.parametrize("chunk", [5, 16, 57, 1000])
def test_rank_topk_equals_brute_force_with_exclusion(chunk):
  scores, train, valid, _ = random_problem()
  nu, ni = scores.shape
  excl = [a | b for a, b in zip(sets(train, nu), sets(valid, nu))]
  width = 64
  ex = np.zeros((nu, width), np.int32)
  ex_len = np.array([len(e) for e in excl], np.int32)
  for u, e in enumerate(excl):
    ex[u, :len(e)] = sorted(e)
  top = np.asarray(rank_topk(table_scorer(chunk), jnp.asarray(scores), {"users": jnp.arange(nu)},
                             jnp.asarray(ex), jnp.asarray(ex_len), k=10, n_items=ni))
  np.testing.assert_array_equal(top, brute_rank(scores, excl, 10))


def reference_metrics(scores, train, valid, test, k, oracle):
  nu = scores.shape[0]
  excl = [a | b for a, b in zip(sets(train, nu), sets(valid, nu))]
  held = sets(test, nu)
  ranked = brute_rank(scores, excl, k)
  rec, ndcg, pild, users = [], [], [], []
  for u in range(nu):
    if not held[u]:
      continue
    hits = [int(i in held[u]) for i in ranked[u]]
    rec.append(sum(hits) / min(k, len(held[u])))
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(held[u]))))
    ndcg.append(dcg / idcg)
    j = oracle.pairwise(ranked[u][None])[0]
    pild.append(np.mean([1 - j[a, b] for a in range(k) for b in range(a + 1, k)]))
    users.append(u)
  cov = len(set(ranked[users].ravel())) / scores.shape[1]
  return {"recall": np.mean(rec), "ndcg": np.mean(ndcg), "pild": np.mean(pild), "coverage": cov}


def test_evaluate_ranking_values_and_independence_of_batch_and_chunk():
  scores, train, valid, test = random_problem(1)
  nu, ni = scores.shape
  oracle = JaccardOracle(train.csr(nu, ni))
  results = []
  for user_batch, chunk in [(7, 5), (64, 1000), (16, 23)]:
    results.append(evaluate_ranking(table_scorer(chunk), jnp.asarray(scores),
                                    lambda users: {"users": users.astype(np.int32)}, test, [train, valid],
                                    nu, ni, ks=(5, 10), user_batch=user_batch, jaccard=oracle))
  assert results[0] == results[1] == results[2]
  ref = reference_metrics(scores, train, valid, test, 10, oracle)
  r = results[0]
  assert r["users"] == len(np.unique(test.user))
  for name in ("recall", "ndcg", "pild", "coverage"):
    assert r[f"{name}@10"] == pytest.approx(ref[name], rel=1e-5), name


def test_jaccard_oracle_dense_and_sparse_paths_equal_brute_force():
  rng = np.random.default_rng(3)
  m = rng.random((30, 20)) < 0.3
  pairs = Pairs(*map(lambda a: a.astype(np.int32), np.nonzero(m)))
  csr = pairs.csr(30, 20)
  items = rng.integers(0, 20, (4, 6))
  dense = JaccardOracle(csr).pairwise(items)
  sparse = JaccardOracle(csr, max_dense_items=0).pairwise(items)
  brute = np.zeros_like(dense)
  for b in range(4):
    for x in range(6):
      for y in range(6):
        ux, uy = set(np.flatnonzero(m[:, items[b, x]])), set(np.flatnonzero(m[:, items[b, y]]))
        brute[b, x, y] = len(ux & uy) / len(ux | uy) if ux | uy else 0.0
  np.testing.assert_allclose(dense, brute, rtol=1e-6)
  np.testing.assert_allclose(sparse, brute, rtol=1e-6)
