"""NCF / NeuMF: BCE and scores against numpy, the negative sampler, pretraining, learning on planted data."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from xplo_jax.checkpoint import Checkpointer
from xplo_jax.config import apply_overrides
from xplo_jax.models.ncf import NCF, RECIPES, bce_loss, pretrain_config, sample_negatives
from xplo_jax.recipes import get_recipe
from xplo_jax.sharding import make_mesh
from xplo_jax.train import create_state, train_and_evaluate

from tiny import small_cfg

U, V = 5, 12

# Jitted once per shape: eager dispatch compiles every primitive of the sampler separately.
draw_negatives = jax.jit(sample_negatives, static_argnums=(3, 4))
bce = nnx.jit(bce_loss)

# The budget that makes NeuMF beat popularity reliably on tiny (300 users): 20 epochs of 10 steps.
FAST = ["train.batch_size=32", "train.learning_rate=0.01", "train.eval_every=5", "train.patience=1000"]


def model(kind, layers=(8, 4, 2), seed=0):
  """A small NCF with every parameter redrawn at scale 0.5, so logits are far from 0."""
  m = NCF(U, V, kind=kind, factors=3, mlp_layers=layers, rngs=nnx.Rngs(seed))
  state = nnx.state(m, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.PRNGKey(seed + 100), len(leaves))
  nnx.update(m, jax.tree.unflatten(treedef, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
  return m


def numpy_params(m: NCF) -> dict:
  f = lambda x: np.asarray(x[...], np.float64)
  p = {"kind": m.kind, "h": f(m.predict.kernel)[:, 0], "b": f(m.predict.bias)[0]}
  if m.kind in ("gmf", "neumf"):
    p.update(P=f(m.gmf_user), Q=f(m.gmf_item))
  if m.kind in ("mlp", "neumf"):
    p.update(P2=f(m.mlp_user), Q2=f(m.mlp_item), layers=[(f(l.kernel), f(l.bias)) for l in m.mlp])
  return p


def numpy_logit(p: dict, u: int, i: int) -> float:
  """ŷ's logit for one pair, straight from the paper's definition (float64)."""
  parts = []
  if p["kind"] in ("gmf", "neumf"):
    parts.append(p["P"][u] * p["Q"][i])                              # φ_G = p_u ⊙ q_i
  if p["kind"] in ("mlp", "neumf"):
    z = np.concatenate([p["P2"][u], p["Q2"][i]])                     # z₀ = [p'_u ; q'_i]
    for w, b in p["layers"]:
      z = np.maximum(z @ w + b, 0.0)
    parts.append(z)
  return float(np.concatenate(parts) @ p["h"] + p["b"])


def numpy_bce(m, users, pos, pos_mask, neg, neg_mask) -> float:
  """−mean over instances of y log ŷ + (1 − y) log(1 − ŷ)."""
  p = numpy_params(m)
  terms = []
  for r, u in enumerate(users):
    for ids, mask, y in ((pos, pos_mask, 1.0), (neg, neg_mask, 0.0)):
      for j in np.flatnonzero(mask[r]):
        prob = 1.0 / (1.0 + np.exp(-numpy_logit(p, int(u), int(ids[r, j]))))
        terms.append(-(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
  return float(np.mean(terms))


KINDS = [("gmf", (8, 4, 2)), ("mlp", (8, 4, 2)), ("neumf", (8, 4, 2)), ("mlp", (6,)), ("neumf", (6,))]


@pytest.mark.parametrize("kind,layers", KINDS)
def test_bce_loss_equals_numpy_for_fixed_params_and_negatives(kind, layers):
  m = model(kind, layers)
  rng = np.random.default_rng(1)
  users = np.array([4, 0, 2], np.int32)
  pos = rng.integers(0, V, (3, 4)).astype(np.int32)
  pos_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
  neg = rng.integers(0, V, (3, 16)).astype(np.int32)
  neg_mask = np.arange(16)[None, :] < 4 * pos_mask.sum(1)[:, None]
  loss, count = bce(m, *map(jnp.asarray, (users, pos, pos_mask, neg, neg_mask)))
  assert int(count) == 6 * 5
  np.testing.assert_allclose(float(loss), numpy_bce(m, users, pos, pos_mask, neg, neg_mask), rtol=1e-5)


@pytest.mark.parametrize("kind,layers", KINDS)
def test_scores_of_every_pair_of_a_chunk_equal_numpy(kind, layers):
  m = model(kind, layers, seed=2)
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  scorer = RECIPES[kind].scorer(graphdef, m, item_chunk=16384)
  assert scorer.item_chunk == (16384 if kind == "gmf" else 2048)
  users = np.array([3, 1, 1, 0], np.int32)
  items = np.array([11, 0, 7, 7, 2], np.int32)
  state = scorer.prepare((params, rest), {"users": jnp.asarray(users)})
  got = np.asarray(scorer.score((params, rest), state, jnp.asarray(items)))
  p = numpy_params(m)
  ref = np.array([[numpy_logit(p, u, i) for i in items] for u in users])
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  # The per-user item path used in training gives the same logits.
  per_user = np.asarray(m(jnp.asarray(users), jnp.broadcast_to(jnp.asarray(items), (4, 5))))
  np.testing.assert_allclose(per_user, ref, rtol=1e-5, atol=1e-6)


def test_init_follows_the_source():
  m = NCF(1000, 1500, kind="neumf", factors=8, mlp_layers=(64, 32, 16, 8), rngs=nnx.Rngs(0))
  for emb in (m.gmf_user, m.gmf_item, m.mlp_user, m.mlp_item):           # N(0, 0.01²)
    assert np.asarray(emb[...]).std() == pytest.approx(0.01, rel=0.05)
  assert m.gmf_user.shape == (1000, 8) and m.mlp_item.shape == (1500, 32)
  assert [layer.kernel.shape for layer in m.mlp] == [(64, 32), (32, 16), (16, 8)]
  k = np.asarray(m.mlp[0].kernel[...])                                     # Glorot-uniform
  assert np.abs(k).max() <= np.sqrt(6 / 96) and np.abs(k).max() > 0.95 * np.sqrt(6 / 96)
  h = np.asarray(m.predict.kernel[...])                                    # LeCun-uniform over 8 + 8 inputs
  assert h.shape == (16, 1) and np.abs(h).max() <= np.sqrt(3 / 16)
  assert not np.any(np.asarray(m.predict.bias[...])) and not np.any(np.asarray(m.mlp[1].bias[...]))
  assert get_recipe("ncf") is get_recipe("neumf")


def test_negatives_are_uniform_non_train_items_four_per_positive(tiny_data):
  users = np.arange(40)
  arrays = tiny_data.batch(users)
  labels, lens = arrays["labels"].copy(), arrays["a1_len"].copy()
  labels[5, :] = 0                       # a user who trained on every item: nothing to draw
  w = arrays["a1_ids"].shape[1]
  ids, mask = draw_negatives(jax.random.PRNGKey(0), jnp.asarray(labels), jnp.asarray(lens), 4, w)
  ids, mask = np.asarray(ids), np.asarray(mask)
  assert ids.shape == mask.shape == (40, 4 * w)
  expect = np.where(np.arange(40) == 5, 0, 4 * lens)
  np.testing.assert_array_equal(mask, np.arange(4 * w)[None, :] < expect[:, None])   # the first 4·|A₁| draws
  train = {(u, i) for u, i in zip(tiny_data.split.train.user.tolist(), tiny_data.split.train.item.tolist())}
  drawn = [(u, int(i)) for u in users if u != 5 for i in ids[u][mask[u]]]
  assert drawn and not any(p in train for p in drawn)
  # Uniform over the user's non-train items: many draws for one user, chi-square.
  big = 20000
  ids1, mask1 = draw_negatives(jax.random.PRNGKey(1), jnp.asarray(labels[:1]), jnp.asarray([big // 4]), 4, big // 4)
  members = np.flatnonzero(labels[0] != 0)
  counts = np.bincount(np.asarray(ids1)[0][np.asarray(mask1)[0]], minlength=labels.shape[1])
  assert counts[labels[0] == 0].sum() == 0
  assert stats.chisquare(counts[members]).pvalue > 1e-3
  # A different step key gives different negatives (fresh every epoch).
  ids2, _ = draw_negatives(jax.random.PRNGKey(2), jnp.asarray(labels), jnp.asarray(lens), 4, w)
  assert np.mean(np.asarray(ids2)[mask] != ids[mask]) > 0.9


def test_recipe_loss_is_bce_over_real_users_with_the_drawn_negatives(tiny_data):
  recipe = RECIPES["neumf"]
  cfg = small_cfg()
  m = NCF(tiny_data.n_users, tiny_data.n_items, kind="neumf", factors=8, mlp_layers=(64, 32, 16, 8),
          rngs=nnx.Rngs(0))
  users = np.array([7, 3, 250, 7], np.int32)
  arrays = tiny_data.batch(users)
  batch = {"users": jnp.asarray(users), "a1_ids": jnp.asarray(arrays["a1_ids"]),
           "a1_len": jnp.asarray(arrays["a1_len"]), "labels": jnp.asarray(arrays["labels"]),
           "valid": jnp.asarray([True, True, True, False])}                 # the last row is padding
  key = jax.random.PRNGKey(5)
  loss, aux = nnx.jit(recipe.loss, static_argnums=4)(m, batch, jnp.asarray(3, jnp.int32), key, recipe.static(cfg))
  w = arrays["a1_ids"].shape[1]
  neg, neg_mask = map(np.asarray, draw_negatives(key, batch["labels"], batch["a1_len"], 4, w))
  lens = arrays["a1_len"]
  pos_mask = np.arange(w)[None, :] < lens[:, None]
  neg_mask = neg_mask.copy()
  pos_mask[3] = neg_mask[3] = False
  assert int(aux["instances"]) == 5 * lens[:3].sum()
  np.testing.assert_allclose(float(loss), numpy_bce(m, users, arrays["a1_ids"], pos_mask, neg, neg_mask),
                             rtol=1e-4)


def _restore_best(folder, cfg, kind, data):
  final = json.loads((folder / "final.json").read_text())
  sub = pretrain_config(cfg, kind)
  _, graphdef, params, rest, opt = create_state(sub, data, get_recipe(kind), make_mesh())
  ckpt = Checkpointer(folder / "checkpoints")
  params, _, _ = ckpt.restore(final["best_epoch"], params, opt)
  ckpt.close()
  return nnx.merge(graphdef, params, rest), final


def test_neumf_pre_combines_the_best_gmf_and_mlp_as_load_pretrain_model(tiny_data, tmp_path):
  cfg = small_cfg("model.name=neumf-pre", "baseline.ncf_pretrain_epochs=2", "train.epochs=1", *FAST,
                  "train.eval_every=1")
  work = tmp_path / "run"
  res = train_and_evaluate(cfg, work, tiny_data, progress=False)              # the whole flow runs
  assert res.epochs == 1 and np.isfinite(res.test["ndcg@20"])
  for kind in ("gmf", "mlp"):
    stage = json.loads((work / f"pretrain-{kind}" / "config.json").read_text())["config"]
    assert stage["model"]["name"] == kind and stage["train"]["epochs"] == 2
  stamps = {k: (work / f"pretrain-{k}" / "final.json").stat().st_mtime_ns for k in ("gmf", "mlp")}
  # The hook again (as after a crash before the first NeuMF checkpoint): the finished stages are reused.
  recipe = get_recipe("neumf-pre")
  _, graphdef, params, rest, _ = create_state(cfg, tiny_data, recipe, make_mesh())
  fresh = nnx.merge(graphdef, params, rest)
  fresh_emb = np.asarray(fresh.gmf_user[...]).copy()
  combined = nnx.merge(graphdef, recipe.init_params(cfg, tiny_data, graphdef, params, rest, work), rest)
  assert stamps == {k: (work / f"pretrain-{k}" / "final.json").stat().st_mtime_ns for k in ("gmf", "mlp")}
  gmf, _ = _restore_best(work / "pretrain-gmf", cfg, "gmf", tiny_data)
  mlp, _ = _restore_best(work / "pretrain-mlp", cfg, "mlp", tiny_data)
  a = lambda x: np.asarray(x[...])
  assert not np.allclose(a(gmf.gmf_user), fresh_emb)                         # the stage did train
  np.testing.assert_array_equal(a(combined.gmf_user), a(gmf.gmf_user))
  np.testing.assert_array_equal(a(combined.gmf_item), a(gmf.gmf_item))
  np.testing.assert_array_equal(a(combined.mlp_user), a(mlp.mlp_user))
  np.testing.assert_array_equal(a(combined.mlp_item), a(mlp.mlp_item))
  for c, s in zip(combined.mlp, mlp.mlp):
    np.testing.assert_array_equal(a(c.kernel), a(s.kernel))
    np.testing.assert_array_equal(a(c.bias), a(s.bias))
  h_gmf, h_mlp = a(gmf.predict.kernel)[:, 0], a(mlp.predict.kernel)[:, 0]
  np.testing.assert_allclose(a(combined.predict.kernel)[:, 0], np.concatenate([0.5 * h_gmf, 0.5 * h_mlp]), rtol=1e-6)
  b_gmf, b_mlp = float(a(gmf.predict.bias)[0]), float(a(mlp.predict.bias)[0])
  assert b_gmf != 0.0 and b_mlp != 0.0
  assert float(a(combined.predict.bias)[0]) == pytest.approx(0.5 * b_gmf + 0.5 * b_mlp, rel=1e-6)
  # Plain neumf does not pretrain; with baseline.ncf_pretrain it does, from the same stages.
  a_params = lambda p: [np.asarray(x) for x in jax.tree.leaves(p)]
  np.testing.assert_array_equal(np.asarray(params["gmf_user"][...]), fresh_emb)   # the hook is pure
  plain = get_recipe("neumf").init_params(cfg, tiny_data, graphdef, params, rest, work)
  assert all(np.array_equal(x, y) for x, y in zip(a_params(plain), a_params(params)))
  flagged = get_recipe("neumf").init_params(apply_overrides(cfg, ["baseline.ncf_pretrain=true"]), tiny_data,
                                            graphdef, params, rest, work)
  assert all(np.array_equal(x, y) for x, y in zip(a_params(flagged), a_params(nnx.state(combined, nnx.Param))))
  # ŷ of the combined NeuMF = σ(½ x_GMF + ½ x_MLP) for the pretrained logits x (α = 0.5).
  users, items = jnp.array([0, 17, 299]), jnp.array([3, 150, 199])
  np.testing.assert_allclose(combined(users, items), 0.5 * gmf(users, items) + 0.5 * mlp(users, items),
                             rtol=1e-5, atol=1e-6)


def test_neumf_beats_popularity_on_planted_data(tiny_data, tmp_path):
  cfg = small_cfg("model.name=neumf", "train.epochs=20", *FAST)
  ncf = train_and_evaluate(cfg, tmp_path / "n", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  print("neumf", ncf.test["ndcg@20"], ncf.test["recall@20"], "popularity", pop.test["ndcg@20"],
        pop.test["recall@20"])
  assert ncf.test["ndcg@20"] > 2.0 * pop.test["ndcg@20"], (ncf.test["ndcg@20"], pop.test["ndcg@20"])
  assert ncf.test["recall@20"] > 1.8 * pop.test["recall@20"], (ncf.test["recall@20"], pop.test["recall@20"])
