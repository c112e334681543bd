"""LightGCN and the shared graph helpers: the normalized graph and its two kernels
against dense numpy, BPR sampling, the BPR objective against numpy, scoring, and
learning on the planted tiny data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xplo_jax.data.types import Pairs
from xplo_jax.models import graph_utils as gu
from xplo_jax.models.lightgcn import RECIPE, LightGCN
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg

N_USERS, N_ITEMS = 7, 9


def toy_pairs(seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS) -> Pairs:
  """Random pairs; the last user and the last item have none (isolated nodes); one pair repeated."""
  rng = np.random.default_rng(seed)
  r = rng.random((n_users, n_items)) < 0.4
  r[-1, :] = False
  r[:, -1] = False
  r[np.arange(n_users - 1), rng.integers(0, n_items - 1, n_users - 1)] = True   # every other user has one
  u, i = np.nonzero(r)
  u = np.concatenate([u, u[:1]]).astype(np.int32)            # a duplicate: counted once
  i = np.concatenate([i, i[:1]]).astype(np.int32)
  return Pairs(u, i)


def dense_laplacian(pairs: Pairs, n_users: int, n_items: int) -> np.ndarray:
  """D^{-1/2} A D^{-1/2} of the bipartite graph, built densely (isolated rows = 0)."""
  n = n_users + n_items
  a = np.zeros((n, n))
  a[pairs.user, n_users + pairs.item] = 1.0
  a[n_users + pairs.item, pairs.user] = 1.0
  d = a.sum(axis=1)
  inv = np.zeros(n)
  inv[d > 0] = d[d > 0] ** -0.5
  return inv[:, None] * a * inv[None, :]


def lightgcn_reference(lap: np.ndarray, e0: np.ndarray, layers: int) -> np.ndarray:
  out, e = e0.copy(), e0.copy()
  for _ in range(layers):
    e = lap @ e
    out = out + e
  return out / (layers + 1)


def ego_numpy(model) -> np.ndarray:
  return np.concatenate([np.asarray(x, np.float64) for x in model.ego()], axis=0)


def jitted(model, method: str, *args, **kwargs):
  """``getattr(model, method)(*args, **kwargs)`` as one jitted call (eager dispatch is slow)."""
  gdef, state = nnx.split(model)
  return jax.jit(lambda s, a: getattr(nnx.merge(gdef, s), method)(*a, **kwargs))(state, args)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_propagation_matches_dense_numpy(kernel):
  pairs = toy_pairs()
  graph = gu.normalized_bipartite(pairs, N_USERS, N_ITEMS)
  model = LightGCN(graph, embed_dim=5, layers=3, kernel=kernel, rngs=nnx.Rngs(params=0))
  assert model.adjacency.kernel == kernel
  lap = dense_laplacian(pairs, N_USERS, N_ITEMS)
  ref = lightgcn_reference(lap, ego_numpy(model), 3)
  f_u, f_v = jitted(model, "embeddings")
  np.testing.assert_allclose(np.asarray(f_u), ref[:N_USERS], atol=1e-6)
  np.testing.assert_allclose(np.asarray(f_v), ref[N_USERS:], atol=1e-6)
  # one application of the operator is L itself
  eye = jnp.eye(N_USERS + N_ITEMS, dtype=jnp.float32)
  np.testing.assert_allclose(np.asarray(jitted(model.adjacency, "__call__", eye)), lap, atol=1e-6)


def test_kernels_agree_on_values_and_gradients():
  pairs = toy_pairs(seed=3)
  graph = gu.normalized_bipartite(pairs, N_USERS, N_ITEMS)
  grads = []
  for kernel in ("dense", "sparse"):
    model = LightGCN(graph, embed_dim=4, layers=2, kernel=kernel, rngs=nnx.Rngs(params=1))
    gdef, params, rest = nnx.split(model, nnx.Param, ...)

    def f(p):
      f_u, f_v = nnx.merge(gdef, p, rest).embeddings()
      return jnp.sum(jnp.sin(f_u @ f_v.T))

    grads.append(jax.jit(jax.grad(f))(params))
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_auto_kernel_follows_the_budget():
  assert gu.choose_graph_kernel("auto", 1000, 1000, 0.0, budget_mb=4.0) == "dense"      # 3.8 MiB
  assert gu.choose_graph_kernel("auto", 1000, 1000, 0.1, budget_mb=4.0) == "sparse"     # ×3 with dropout
  assert gu.choose_graph_kernel("auto", 1000, 1000, 0.1, budget_mb=12.0) == "dense"
  with pytest.raises(ValueError):
    gu.choose_graph_kernel("bcsr", 10, 10, 0.0, 1.0)


def test_sampling_positive_from_train_list_negative_outside():
  n_items, width = 12, 8
  train = [[0, 3, 5], [1], [2, 4, 6, 7, 8, 9, 10, 11]]        # the last user: 4 non-train items
  a1 = np.zeros((3, width), np.int32)
  a1_len = np.array([len(t) for t in train], np.int32)
  labels = np.full((3, n_items), 4, np.uint8)
  labels[:, 1] = 1                                             # other labels != 0 are still non-train
  for u, t in enumerate(train):
    a1[u, :len(t)] = t
    labels[u, t] = 0
  a1[0, 3:] = 11                                               # padding that must never be drawn
  draws = 3000
  keys = jax.random.split(jax.random.PRNGKey(0), draws)
  pos, has_pos = jax.jit(jax.vmap(lambda k: gu.sample_positive(k, jnp.asarray(a1), jnp.asarray(a1_len))))(keys)
  neg, has_neg = jax.jit(jax.vmap(lambda k: gu.sample_negative(k, jnp.asarray(labels))))(keys)
  pos, neg = np.asarray(pos), np.asarray(neg)
  assert np.asarray(has_pos).all() and np.asarray(has_neg).all()
  for u, t in enumerate(train):
    got_p = np.bincount(pos[:, u], minlength=n_items)
    got_n = np.bincount(neg[:, u], minlength=n_items)
    rest = sorted(set(range(n_items)) - set(t))
    assert set(np.flatnonzero(got_p)) == set(t)                # positives: exactly the train list
    assert set(np.flatnonzero(got_n)) == set(rest)             # negatives: exactly the others
    # uniform: every count within 5 sd of draws / n
    for got, support in ((got_p, t), (got_n, rest)):
      p = 1.0 / len(support)
      assert np.all(np.abs(got[support] - draws * p) < 5 * np.sqrt(draws * p * (1 - p)) + 1)
  # a user without train items is flagged (its row does not count)
  _, has = gu.sample_positive(jax.random.PRNGKey(1), jnp.asarray(a1), jnp.asarray([3, 0, 8], jnp.int32))
  assert np.asarray(has).tolist() == [True, False, True]


def test_bpr_objective_matches_numpy_with_l2_on_ego_embeddings():
  pairs = toy_pairs(seed=1)
  graph = gu.normalized_bipartite(pairs, N_USERS, N_ITEMS)
  model = LightGCN(graph, embed_dim=6, layers=2, kernel="sparse", rngs=nnx.Rngs(params=2))
  # scale the ego embeddings so that BPR and L2 terms are both far from trivial
  model.user_embedding[...] = model.user_embedding[...] * 10.0
  model.item_embedding[...] = model.item_embedding[...] * 10.0
  users = np.array([0, 1, 2, 3, 4, 0], np.int32)
  pos = np.array([1, 2, 0, 4, 3, 5], np.int32)
  neg = np.array([7, 6, 5, 0, 2, 3], np.int32)
  valid = np.array([1, 1, 1, 1, 1, 0], bool)                   # the last row is padding
  lam = 0.3
  gdef, state = nnx.split(model)
  loss, aux = jax.jit(lambda s, *a: RECIPE.objective(nnx.merge(gdef, s), *a, lam))(
      state, jnp.asarray(users), jnp.asarray(pos), jnp.asarray(neg), jnp.asarray(valid))
  e0 = ego_numpy(model)
  fin = lightgcn_reference(dense_laplacian(pairs, N_USERS, N_ITEMS), e0, 2)
  fu, fv = fin[:N_USERS], fin[N_USERS:]
  gu0, gv0 = e0[:N_USERS], e0[N_USERS:]
  v = valid
  diff = np.sum(fu[users] * fv[pos], 1) - np.sum(fu[users] * fv[neg], 1)
  bpr = -np.mean(np.log(1.0 / (1.0 + np.exp(-diff[v]))))
  l2 = np.sum((gu0[users] ** 2).sum(1)[v] + (gv0[pos] ** 2).sum(1)[v] + (gv0[neg] ** 2).sum(1)[v]) / 2 / v.sum()
  assert float(aux["bpr"]) == pytest.approx(bpr, rel=1e-5)
  assert float(aux["l2"]) == pytest.approx(l2, rel=1e-5)
  assert float(loss) == pytest.approx(bpr + lam * l2, rel=1e-5)
  # the final embeddings' norms differ from the ego ones: a wrong L2 target would show
  l2_final = np.sum((fu[users] ** 2).sum(1)[v] + (fv[pos] ** 2).sum(1)[v] + (fv[neg] ** 2).sum(1)[v]) / 2 / v.sum()
  assert abs(l2_final - l2) > 0.1 * l2


def test_scorer_is_the_inner_product_of_final_embeddings():
  pairs = toy_pairs(seed=2)
  graph = gu.normalized_bipartite(pairs, N_USERS, N_ITEMS)
  model = LightGCN(graph, embed_dim=4, layers=3, rngs=nnx.Rngs(params=3))
  gdef, params, rest = nnx.split(model, nnx.Param, ...)
  scorer = RECIPE.scorer(gdef, model, item_chunk=4)
  users = np.array([2, 0, 5], np.int32)
  state = jax.jit(scorer.prepare)((params, rest), RECIPE.eval_inputs({}, users))
  items = jnp.arange(4, 8, dtype=jnp.int32)
  got = np.asarray(scorer.score((params, rest), state, items))
  fin = lightgcn_reference(dense_laplacian(pairs, N_USERS, N_ITEMS), ego_numpy(model), 3)
  np.testing.assert_allclose(got, fin[users] @ fin[N_USERS + 4:N_USERS + 8].T, atol=1e-6)


# ----------------------------------------------------------------------------- learning

GRAPH = ["train.batch_size=64"]      # on the tiny set of tests/tiny.py
# 12 epochs × 5 steps, lr 0.01, evaluation every 4 epochs (auto): ~3× popularity on tiny.
BUDGET = ["train.epochs=12", "train.learning_rate=0.01", "train.patience=1000"]


def test_lightgcn_beats_popularity_on_planted_data(tiny_data, tmp_path):
  cfg = small_cfg(*GRAPH, *BUDGET, "model.name=lightgcn")
  res = train_and_evaluate(cfg, tmp_path / "l", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert res.test["ndcg@20"] > 2.0 * pop.test["ndcg@20"], (res.test["ndcg@20"], pop.test["ndcg@20"])
  assert res.test["recall@20"] > 1.8 * pop.test["recall@20"], (res.test["recall@20"], pop.test["recall@20"])
  assert res.history[-1]["loss"] < res.history[0]["loss"]
