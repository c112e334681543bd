"""NGCF: propagation against dense numpy (paper form, stored layers L2-normalized),
edge and message dropout (rescaled, training only), the BPR objective against
numpy, deterministic scoring, and learning on the planted tiny data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xplo_jax.config import Config, apply_overrides
from xplo_jax.data.types import Pairs
from xplo_jax.models import graph_utils as gu
from xplo_jax.models.ngcf import NGCF, RECIPE
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg

N_USERS, N_ITEMS = 6, 8


def toy_pairs(seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS, p: float = 0.4) -> Pairs:
  rng = np.random.default_rng(seed)
  r = rng.random((n_users, n_items)) < p
  r[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
  u, i = np.nonzero(r)
  return Pairs(u.astype(np.int32), i.astype(np.int32))


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


def ngcf_reference(lap: np.ndarray, e0: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
  """The paper's matrix form, the code's per-layer L2 normalization of the stored copies, concatenated."""
  e, out = e0, [e0]
  for l in range(w1.shape[0]):
    side = lap @ e
    x = (side + e) @ w1[l] + (side * e) @ w2[l]
    e = np.where(x >= 0, x, 0.2 * x)
    out.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6))
  return np.concatenate(out, axis=1)


def params_numpy(model):
  e0 = np.concatenate([np.asarray(x, np.float64) for x in model.ego()], axis=0)
  return e0, np.asarray(model.w1[...], np.float64), np.asarray(model.w2[...], np.float64)


def make_model(pairs, *, kernel="dense", message_dropout=0.1, edge_dropout=0.1, seed=0, embed_dim=5, layers=3,
               n_users=N_USERS, n_items=N_ITEMS):
  graph = gu.normalized_bipartite(pairs, n_users, n_items)
  return NGCF(graph, embed_dim=embed_dim, layers=layers, message_dropout=message_dropout,
              edge_dropout=edge_dropout, kernel=kernel, rngs=nnx.Rngs(params=seed))


def embeddings_fn(model):
  """A jitted (state, key, train) → (E_U, E_V) of ``model``."""
  gdef, state = nnx.split(model)
  f = jax.jit(lambda s, key, train: nnx.merge(gdef, s).embeddings(key=key, train=train), static_argnums=2)
  return lambda key=None, train=False: f(state, key, train)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_propagation_matches_dense_numpy(kernel):
  pairs = toy_pairs()
  model = make_model(pairs, kernel=kernel)
  e0, w1, w2 = params_numpy(model)
  ref = ngcf_reference(dense_laplacian(pairs, N_USERS, N_ITEMS), e0, w1, w2)
  f_u, f_v = embeddings_fn(model)()                     # evaluation: both dropouts off
  assert f_u.shape == (N_USERS, 5 * 4) and f_v.shape == (N_ITEMS, 5 * 4)
  np.testing.assert_allclose(np.asarray(f_u), ref[:N_USERS], atol=1e-5)
  np.testing.assert_allclose(np.asarray(f_v), ref[N_USERS:], atol=1e-5)
  # the stored layers 1..L have unit rows, layer 0 is the raw embedding
  norms = np.linalg.norm(np.asarray(f_v).reshape(N_ITEMS, 4, 5), axis=2)
  np.testing.assert_allclose(norms[:, 1:], 1.0, atol=1e-5)
  np.testing.assert_allclose(norms[:, 0], np.linalg.norm(e0[N_USERS:], axis=1), rtol=1e-5)


def test_edge_dropout_drops_nonzeros_independently_and_rescales():
  n_users, n_items, rate = 40, 50, 0.3
  pairs = toy_pairs(seed=4, n_users=n_users, n_items=n_items, p=0.3)
  lap = dense_laplacian(pairs, n_users, n_items)
  eye = jnp.eye(n_users + n_items, dtype=jnp.float32)
  mats = {}
  for kernel in ("dense", "sparse"):
    model = make_model(pairs, kernel=kernel, n_users=n_users, n_items=n_items)
    gdef, state = nnx.split(model.adjacency)

    def apply(s, key):
      adj = nnx.merge(gdef, s)
      return adj(eye, adj.dropped(key, rate))

    mats[kernel] = np.asarray(jax.jit(apply)(state, jax.random.PRNGKey(7)))
  np.testing.assert_allclose(mats["dense"], mats["sparse"], atol=1e-6)   # same mask → same operator
  m = mats["dense"]
  nz = lap != 0
  assert np.all(m[~nz] == 0)                                             # no new edges
  kept = m[nz] != 0
  np.testing.assert_allclose(m[nz][kept], lap[nz][kept] / (1 - rate), rtol=1e-5)   # kept ones rescaled
  assert abs(1 - kept.mean() - rate) < 0.03, kept.mean()                 # ~p of the 2|E| nonzeros dropped
  # (u, i) and (i, u) are two nonzeros with their own masks: the result is not symmetric
  assert not np.array_equal(m != 0, (m != 0).T)
  # the mean over masks is L (unbiased): every entry within 5 sd of L[u, i]
  model = make_model(pairs, kernel="sparse", n_users=n_users, n_items=n_items)
  gdef, state = nnx.split(model.adjacency)
  draws = 400
  mean = jax.jit(lambda s, keys: jax.vmap(lambda k: nnx.merge(gdef, s)(eye, nnx.merge(gdef, s).dropped(k, rate)))(
      keys).mean(0))(state, jax.random.split(jax.random.PRNGKey(8), draws))
  sd = lap * np.sqrt(rate / (1 - rate) / draws)
  assert np.all(np.abs(np.asarray(mean) - lap) <= 5 * sd + 1e-6)


def test_message_dropout_drops_layer_outputs_and_rescales():
  """Edge dropout off: the zeros of the stored layers reveal the masks; numpy with those masks
  (kept entries / (1 − p), the dropped E⁽¹⁾ feeding layer 2) must reproduce the output."""
  rate, D, L = 0.4, 6, 2
  pairs = toy_pairs(seed=6, n_users=20, n_items=30, p=0.3)
  model = make_model(pairs, message_dropout=rate, edge_dropout=0.0, embed_dim=D, layers=L, n_users=20, n_items=30)
  f_u, f_v = embeddings_fn(model)(jax.random.PRNGKey(4), True)
  got = np.concatenate([np.asarray(f_u), np.asarray(f_v)]).reshape(50, L + 1, D)
  e0, w1, w2 = params_numpy(model)
  lap = dense_laplacian(pairs, 20, 30)
  e = e0
  np.testing.assert_allclose(got[:, 0], e0, atol=1e-6)
  for l in range(L):
    mask = got[:, l + 1] != 0
    assert abs(1 - mask.mean() - rate) < 0.08, mask.mean()          # ~p of the outputs dropped
    side = lap @ e
    x = (side + e) @ w1[l] + (side * e) @ w2[l]
    e = np.where(x >= 0, x, 0.2 * x) * mask / (1 - rate)
    ref = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)
    np.testing.assert_allclose(got[:, l + 1], ref, atol=1e-5)


def test_dropout_only_in_training_and_scores_deterministic():
  pairs = toy_pairs(seed=1)
  model = make_model(pairs, message_dropout=0.3, edge_dropout=0.3)
  emb = embeddings_fn(model)
  e0, w1, w2 = params_numpy(model)
  ref = ngcf_reference(dense_laplacian(pairs, N_USERS, N_ITEMS), e0, w1, w2)
  a = np.asarray(emb(jax.random.PRNGKey(0), False)[1])
  b = np.asarray(emb(jax.random.PRNGKey(1), False)[1])
  np.testing.assert_array_equal(a, b)                                    # train=False ignores the key
  np.testing.assert_allclose(a, ref[N_USERS:], atol=1e-5)
  t0 = np.asarray(emb(jax.random.PRNGKey(0), True)[1])
  t1 = np.asarray(emb(jax.random.PRNGKey(1), True)[1])
  assert not np.allclose(t0, a) and not np.allclose(t0, t1)              # dropout active in training
  # rates 0: training equals evaluation
  plain = embeddings_fn(make_model(pairs, message_dropout=0.0, edge_dropout=0.0))
  np.testing.assert_allclose(np.asarray(plain(jax.random.PRNGKey(3), True)[1]), a, atol=1e-6)
  # the scorer: deterministic, the inner product of the final embeddings
  gdef, params, rest = nnx.split(model, nnx.Param, ...)
  scorer = RECIPE.scorer(gdef, model, item_chunk=N_ITEMS)
  users = np.array([3, 0, 5], np.int32)
  run = jax.jit(lambda pr, inputs, items: scorer.score(pr, scorer.prepare(pr, inputs), items))
  items = jnp.arange(N_ITEMS, dtype=jnp.int32)
  s1 = np.asarray(run((params, rest), RECIPE.eval_inputs({}, users), items))
  s2 = np.asarray(run((params, rest), RECIPE.eval_inputs({}, users), items))
  np.testing.assert_array_equal(s1, s2)
  np.testing.assert_allclose(s1, ref[users] @ ref[N_USERS:].T, atol=1e-5)


def test_bpr_objective_matches_numpy_with_l2_on_final_embeddings():
  pairs = toy_pairs(seed=2)
  model = make_model(pairs, kernel="sparse", message_dropout=0.0, edge_dropout=0.0, embed_dim=4, layers=2)
  model.user_embedding[...] = model.user_embedding[...] * 5.0
  model.item_embedding[...] = model.item_embedding[...] * 5.0
  users = np.array([0, 1, 2, 3, 4, 5, 2], np.int32)
  pos = np.array([1, 2, 0, 4, 3, 5, 6], np.int32)
  neg = np.array([7, 6, 5, 0, 2, 3, 1], np.int32)
  valid = np.array([1, 1, 1, 1, 1, 1, 0], bool)
  lam = 0.2
  gdef, state = nnx.split(model)
  loss, aux = jax.jit(lambda s, *a: RECIPE.objective(nnx.merge(gdef, s), *a, lam))(
      state, jnp.asarray(users), jnp.asarray(pos), jnp.asarray(neg), jnp.asarray(valid))
  e0, w1, w2 = params_numpy(model)
  fin = ngcf_reference(dense_laplacian(pairs, N_USERS, N_ITEMS), e0, w1, w2)
  fu, fv = fin[:N_USERS], fin[N_USERS:]
  v = valid
  diff = np.sum(fu[users] * fv[pos], 1) - np.sum(fu[users] * fv[neg], 1)
  bpr = -np.mean(np.log(1.0 / (1.0 + np.exp(-diff[v]))))
  l2 = np.sum((fu[users] ** 2).sum(1)[v] + (fv[pos] ** 2).sum(1)[v] + (fv[neg] ** 2).sum(1)[v]) / 2 / v.sum()
  assert float(aux["bpr"]) == pytest.approx(bpr, rel=1e-5)
  assert float(aux["l2"]) == pytest.approx(l2, rel=1e-5)
  assert float(loss) == pytest.approx(bpr + lam * l2, rel=1e-5)


def test_training_loss_is_finite_random_and_has_gradients_everywhere():
  pairs = toy_pairs(seed=5)
  model = make_model(pairs)
  gdef, params, rest = nnx.split(model, nnx.Param, ...)
  a1 = np.zeros((4, N_ITEMS), np.int32)
  a1_len = np.zeros(4, np.int32)
  labels = np.full((4, N_ITEMS), 4, np.uint8)
  users = np.array([0, 2, 4, 1], np.int32)
  for r, u in enumerate(users):
    t = pairs.item[pairs.user == u]
    a1[r, :len(t)] = t
    a1_len[r] = len(t)
    labels[r, t] = 0
  batch = {"users": users, "a1_ids": a1, "a1_len": a1_len, "labels": labels, "valid": np.array([1, 1, 1, 0], bool)}
  st = RECIPE.static(apply_overrides(Config(), ["baseline.gcn_reg=0.01"]))
  f = jax.jit(jax.value_and_grad(lambda p, key: RECIPE.loss(nnx.merge(gdef, p, rest), batch, 0, key, st)[0]))
  l0, g = f(params, jax.random.PRNGKey(0))
  l1, _ = f(params, jax.random.PRNGKey(1))
  assert np.isfinite(float(l0)) and float(l0) != float(l1)
  for name, leaf in nnx.to_flat_state(g):
    arr = np.asarray(leaf[...])
    assert np.all(np.isfinite(arr)) and np.abs(arr).max() > 0, name


# ----------------------------------------------------------------------------- learning

GRAPH = ["train.batch_size=64"]      # on the tiny set of tests/tiny.py
# 12 epochs × 5 steps, lr 0.01, default dropouts and λ, evaluation every 4 epochs (auto): ~2.6× popularity.
BUDGET = ["train.epochs=12", "train.learning_rate=0.01", "train.patience=1000"]


def test_ngcf_beats_popularity_on_planted_data(tiny_data, tmp_path):
  cfg = small_cfg(*GRAPH, *BUDGET, "model.name=ngcf")
  res = train_and_evaluate(cfg, tmp_path / "n", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert res.test["ndcg@20"] > 2.0 * pop.test["ndcg@20"], (res.test["ndcg@20"], pop.test["ndcg@20"])
  assert res.test["recall@20"] > 1.8 * pop.test["recall@20"], (res.test["recall@20"], pop.test["recall@20"])
  assert res.history[-1]["loss"] < res.history[0]["loss"]
