"""T(J&P) reconstruction: J, P, sim by hand; the walk against a dense solve; scores by brute force."""

from __future__ import annotations

import dataclasses
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from xplo_jax.data.types import Pairs
from xplo_jax.models import tjp
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg



# Classes a, b, c, d = 0..3; items 0..14.
HAND_CLASS = {0: 0, 1: 0, 2: 0, 11: 0, 12: 0, 3: 1, 4: 1, 13: 1, 5: 2, 6: 2, 14: 2, 7: 3, 8: 3, 9: 3, 10: 3}
HAND_USERS = [{0, 1, 3, 5}, {0, 1, 2, 3, 5, 6}, {1, 2, 3, 7, 10}, {3, 4, 6, 8, 9}, {11, 12, 13, 14}, {7, 8}]


def hand_matrices():
  r = np.zeros((len(HAND_USERS), 15))
  for u, items in enumerate(HAND_USERS):
    r[u, sorted(items)] = 1
  c = np.zeros((15, 4))
  for i, k in HAND_CLASS.items():
    c[i, k] = 1
  return sp.csr_matrix(r), sp.csr_matrix(c)


def test_jaccard_pearson_and_sim_by_hand():
  r, c = hand_matrices()
  interest = tjp.class_interest(r, c)
  np.testing.assert_allclose(interest, [[1 / 2, 1 / 4, 1 / 4, 0], [1 / 2, 1 / 6, 1 / 3, 0], [2 / 5, 1 / 5, 0, 2 / 5],
                                        [0, 2 / 5, 1 / 5, 2 / 5], [1 / 2, 1 / 4, 1 / 4, 0], [0, 0, 0, 1]])
  jac, pearson = tjp.jaccard_pearson(interest, interest)
  sim = tjp.user_similarity(r, interest, slice(0, 6))
  s3 = math.sqrt(3) / 2
  # (u, v): J, P, sim — computed by hand over the shared classes.
  expected = {
      (0, 1): (1, s3, s3),           # shared a,b,c: (1/2,1/4,1/4) vs (1/2,1/6,1/3): cov 1/24, var 1/24 and 1/18
      (0, 2): (1 / 2, 1, 1 / 2),     # shared a,b: two points, same direction
      (0, 3): (1 / 2, 0, 0),         # shared b,c: u0 is constant (1/4, 1/4) → P = 0
      (0, 4): (1, 1, 0),             # identical interests but no shared item → no edge
      (1, 2): (1 / 2, 1, 1 / 2),
      (1, 3): (1 / 2, -1, 0),        # shared b,c: opposite directions → max(P, 0) = 0
      (1, 4): (1, s3, 0),            # no shared item
      (2, 3): (1 / 2, 0, 0),         # shared b,d: u3 constant (2/5, 2/5)
      (2, 5): (1 / 3, 0, 0),         # a single shared class (d) → P = 0
      (3, 5): (1 / 3, 0, 0),
      (0, 5): (0, 0, 0),
  }
  for (u, v), (j, p, s) in expected.items():
    for a, b in ((u, v), (v, u)):
      assert jac[a, b] == pytest.approx(j, abs=1e-12), (a, b)
      assert pearson[a, b] == pytest.approx(p, abs=1e-12), (a, b)
      assert sim[a, b] == pytest.approx(s, abs=1e-12), (a, b)
  assert np.all(np.diag(sim) == 0)


def test_rwr_solves_the_stationary_equation():
  rng = np.random.default_rng(0)
  w = rng.random((7, 7)) * (rng.random((7, 7)) < 0.5)
  w = np.triu(w, 1)
  w = w + w.T
  w[6, :] = w[:, 6] = 0                                     # an isolated user
  c = 0.15
  col = w.sum(0)
  wt = w / np.where(col > 0, col, 1)[None, :]
  exact = c * np.linalg.solve(np.eye(7) - (1 - c) * wt, np.eye(7))      # column a: r = (1−c) W̃ r + c e_a
  cols = np.array([0, 3, 6])
  np.testing.assert_allclose(tjp.rwr(sp.csr_matrix(w), c, cols, iterations=400), exact[:, cols], atol=1e-12)
  r30 = tjp.rwr(sp.csr_matrix(w), c, cols)                 # the default 30 iterations
  assert np.all(np.abs(r30 - exact[:, cols]).sum(0) <= (1 - c) ** 31 + 1e-12)
  np.testing.assert_allclose(exact[:, 6], c * np.eye(7)[:, 6])


def brute_scores(r: np.ndarray, c: np.ndarray, graph_k: int, k: int, restart: float, iterations: int = 30):
  """The reconstruction's five steps with per-pair loops (independent of the vectorised code)."""
  nu, ni = r.shape
  items = [set(np.flatnonzero(r[u])) for u in range(nu)]
  interest = [[sum(c[i, cl] for i in items[u]) / len(items[u]) if items[u] else 0.0 for cl in range(c.shape[1])]
              for u in range(nu)]

  def sim(u, v):
    if u == v or not items[u] & items[v]:
      return 0.0
    cu = {cl for cl, x in enumerate(interest[u]) if x > 0}
    cv = {cl for cl, x in enumerate(interest[v]) if x > 0}
    j = len(cu & cv) / len(cu | cv)
    shared = sorted(cu & cv)
    if len(shared) < 2:
      return 0.0
    x = np.array([interest[u][cl] for cl in shared])
    y = np.array([interest[v][cl] for cl in shared])
    dx, dy = x - x.mean(), y - y.mean()
    if np.sum(dx * dx) < 1e-15 or np.sum(dy * dy) < 1e-15:
      return 0.0
    p = float(np.sum(dx * dy) / math.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    return j * p if p > 1e-12 else 0.0          # |P| ≤ 1e-12: rounding noise of P = 0

  s = np.array([[sim(u, v) for v in range(nu)] for u in range(nu)])

  def top(values, n, allowed):
    cands = [v for v in range(nu) if allowed(v) and values[v] > 0]
    return sorted(cands, key=lambda v: (-round(values[v], 12), v))[:n]

  w = np.zeros((nu, nu))
  for u in range(nu):
    for v in top(s[u], graph_k, lambda v: True):
      w[u, v] = w[v, u] = s[u, v]
  col = w.sum(0)
  wt = np.zeros_like(w)
  for j in range(nu):
    if col[j] > 0:
      wt[:, j] = w[:, j] / col[j]
  exploit, novel = np.zeros((nu, ni)), np.zeros((nu, ni))
  for a in range(nu):
    e = np.zeros(nu)
    e[a] = restart
    ra = e.copy()
    for _ in range(iterations):
      ra = (1 - restart) * wt @ ra + e
    sa = top(s[a], k, lambda v: True)
    ga = top(ra, k, lambda v: v != a and v not in sa)
    for i in range(ni):
      if sa:
        exploit[a, i] = sum(s[a, v] * r[v, i] for v in sa) / sum(s[a, v] for v in sa)
      if ga:
        novel[a, i] = sum(ra[v] * r[v, i] for v in ga) / sum(ra[v] for v in ga)
  return exploit, novel


@pytest.mark.parametrize("graph_k,k", [(2, 3), (1, 2), (50, 50)])
def test_scores_equal_brute_force(graph_k, k):
  rng = np.random.default_rng(5)
  r = (rng.random((14, 16)) < 0.25).astype(np.float64)
  r[3] = 0                                                   # a user without train items
  c = (rng.random((16, 4)) < 0.3).astype(np.float64)
  c[np.arange(16), rng.integers(0, 4, 16)] = 1               # every item has ≥ 1 class; some several
  exploit, novel = tjp.tjp_scores(sp.csr_matrix(r), sp.csr_matrix(c), graph_k=graph_k, neighbors=k, restart=0.15)
  ref_e, ref_n = brute_scores(r, c, graph_k, k, 0.15)
  assert np.count_nonzero(ref_n) > 0 and np.count_nonzero(ref_e) > 0
  np.testing.assert_allclose(exploit, ref_e, atol=1e-10)
  np.testing.assert_allclose(novel, ref_n, atol=1e-10)


def test_kmeans_fallback_without_categories(tiny_data, caplog):
  blind = dataclasses.replace(tiny_data, split=dataclasses.replace(tiny_data.split, categories=None))
  with caplog.at_level(logging.WARNING, logger="xplo_jax.models.tjp"):
    m = tjp.class_matrix(blind)
  assert "DEVIATION" in caplog.text and "k-means" in caplog.text
  assert m.shape == (tiny_data.n_items, tjp.KMEANS_CLUSTERS)
  np.testing.assert_array_equal(np.asarray(m.sum(axis=1)).ravel(), 1)
  real = tjp.class_matrix(tiny_data)
  assert real.shape[0] == tiny_data.n_items and real.sum() >= tiny_data.n_items


def test_novelty_weight_chosen_on_validation_and_beats_popularity(tiny_data, tmp_path):
  """Defaults (k = k_g = 50, c = 0.15, λ_n ∈ {0, 0.25, 0.5, 1, 2, 4}): NDCG@20 ≈ 0.38 vs popularity's 0.12."""
  cfg = small_cfg("model.name=tjp")
  params = tjp.RECIPE.fit(cfg, tiny_data)
  info = tjp.RECIPE.describe(params)
  assert info["novelty_grid"] == list(cfg.baseline.tjp_novelty_weights)
  assert info["novelty_weight"] == info["novelty_grid"][int(np.argmax(info["novelty_valid"]))]
  assert len(set(np.round(info["novelty_valid"], 6))) > 1      # λ_n changes the ranking
  empty = Pairs(np.zeros(0, np.int32), np.zeros(0, np.int32))  # the test split plays no part
  blind = dataclasses.replace(tiny_data, split=dataclasses.replace(tiny_data.split, test=empty))
  again = tjp.RECIPE.fit(cfg, blind)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, again))
  res = train_and_evaluate(cfg, tmp_path / "t", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert res.test["ndcg@20"] > 1.5 * pop.test["ndcg@20"], (res.test["ndcg@20"], pop.test["ndcg@20"])
  assert res.test["recall@20"] > 1.5 * pop.test["recall@20"], (res.test["recall@20"], pop.test["recall@20"])
