"""Mult-VAE: the β-ELBO against numpy, the KL anneal inside the jit, scoring, and learning on planted data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xplo_jax.config import Config, apply_overrides
from xplo_jax.models.multvae import RECIPE, MultVAE, draw_noise
from xplo_jax.recipes import get_recipe
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg

V, H, P = 30, 7, 4

# Jitted once: one compile per shape instead of one per eager primitive.
terms = nnx.jit(MultVAE.terms)
recipe_loss = nnx.jit(RECIPE.loss, static_argnums=4)
LENS = np.array([3, 0, 8, 5], np.int32)



def lists(seed=0, w=8):
  """Padded lists of distinct ids (padding holds junk ids, which must be ignored)."""
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.permutation(V)[:w] for _ in LENS]).astype(np.int32)
  return ids, LENS.copy()


def model(seed=0, kernel="auto", dropout=0.5):
  return MultVAE(V, hidden_dim=H, latent_dim=P, dropout=dropout, encoder_kernel=kernel, rngs=nnx.Rngs(seed))


def weights(m: MultVAE) -> dict:
  f = lambda x: np.asarray(x[...], np.float64)
  return {"W1": f(m.enc_w), "b1": f(m.enc_b), "W2": f(m.enc_out.kernel), "b2": f(m.enc_out.bias),
          "W3": f(m.dec_hidden.kernel), "b3": f(m.dec_hidden.bias), "W4": f(m.dec_w), "b4": f(m.dec_b)}


def numpy_terms(wt, ids, lens, keep, eps, dropout=0.5):
  """The notebook's MultiVAE forward pass on the dense binary row, in float64."""
  b = len(lens)
  x = np.zeros((b, V))
  mask = np.ones((b, V))
  for r in range(b):
    x[r, ids[r, :lens[r]]] = 1.0
    if keep is not None:
      mask[r, ids[r, :lens[r]]] = keep[r, :lens[r]]
  norm = np.sqrt(np.maximum((x ** 2).sum(1, keepdims=True), 1e-12))      # tf.nn.l2_normalize
  h = x / norm
  if keep is not None:
    h = h * mask / (1.0 - dropout)                                        # tf.nn.dropout(keep_prob=0.5)
  h = np.tanh(h @ wt["W1"] + wt["b1"])
  out = h @ wt["W2"] + wt["b2"]
  mu, logvar = out[:, :P], out[:, P:]
  z = mu + eps * np.exp(0.5 * logvar)
  logits = np.tanh(z @ wt["W3"] + wt["b3"]) @ wt["W4"] + wt["b4"]
  m = logits.max(1, keepdims=True)
  log_softmax = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
  nll = -(log_softmax * x).sum(1)
  kl = 0.5 * (-logvar + np.exp(logvar) + mu ** 2 - 1).sum(1)
  return nll, kl, logits, mu


def test_init_follows_the_notebook():
  m = MultVAE(500, hidden_dim=600, latent_dim=200, rngs=nnx.Rngs(0))
  w = weights(m)
  assert w["W1"].shape == (500, 600) and w["W2"].shape == (600, 400)     # ONE [600, 2·200] matrix
  assert w["W3"].shape == (200, 600) and w["W4"].shape == (600, 500)
  limit = np.sqrt(6 / (500 + 600))                                        # Xavier-uniform
  assert np.abs(w["W1"]).max() <= limit and np.abs(w["W1"]).max() > 0.99 * limit
  assert np.abs(w["W2"]).max() <= np.sqrt(6 / 1000) and np.abs(w["W2"]).max() > 0.99 * np.sqrt(6 / 1000)
  for k in ("b1", "b2", "b3", "b4"):                                      # truncated N(0, 0.001²) at ±2 std
    assert np.abs(w[k]).max() <= 0.002 and 0.0004 < w[k].std() < 0.001


@pytest.mark.parametrize("kernel", ["dense", "gather"])
def test_loss_terms_equal_numpy_for_fixed_mask_and_noise(kernel):
  m = model(kernel=kernel)
  ids, lens = lists()
  rng = np.random.default_rng(3)
  keep = rng.random(ids.shape) < 0.5
  eps = rng.normal(size=(len(lens), P)).astype(np.float32)
  nll, kl = terms(m, jnp.asarray(ids), jnp.asarray(lens), jnp.asarray(keep), jnp.asarray(eps))
  ref_nll, ref_kl, _, _ = numpy_terms(weights(m), ids, lens, keep, eps)
  np.testing.assert_allclose(nll, ref_nll, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(kl, ref_kl, rtol=1e-5, atol=1e-6)
  assert ref_nll[1] == 0.0 and np.all(ref_nll[[0, 2, 3]] > 0)            # the empty row has no likelihood term
  # No dropout (keep=None) is a different, also exact, value.
  nll0, _ = terms(m, jnp.asarray(ids), jnp.asarray(lens), None, jnp.asarray(eps))
  np.testing.assert_allclose(nll0, numpy_terms(weights(m), ids, lens, None, eps)[0], rtol=1e-5, atol=1e-5)
  assert not np.allclose(nll0, nll)


def recipe_batch(ids, lens, valid):
  return {"a1_ids": jnp.asarray(ids), "a1_len": jnp.asarray(lens), "valid": jnp.asarray(valid)}


@pytest.mark.parametrize("step,beta", [(0, 0.0), (1000, 0.005), (40000, 0.2), (10 ** 6, 0.2)])
def test_recipe_loss_is_mean_of_nll_plus_annealed_kl_over_real_users(step, beta):
  cfg = Config()                                   # β cap 0.2, 200 000 anneal steps (the notebook's)
  st = RECIPE.static(cfg)
  m = model(1)
  ids, lens = lists(1)
  valid = np.array([True, True, True, False])      # the last row is batch padding
  key = jax.random.PRNGKey(7)
  loss, aux = recipe_loss(m, recipe_batch(ids, lens, valid), jnp.asarray(step, jnp.int32), key, st)
  keep, eps = draw_noise(key, ids.shape, P, 0.5)
  nll, kl, _, _ = numpy_terms(weights(m), ids, lens, np.asarray(keep), np.asarray(eps))
  assert float(aux["beta"]) == pytest.approx(beta, rel=1e-6, abs=1e-9)
  np.testing.assert_allclose(float(loss), np.mean((nll + beta * kl)[:3]), rtol=1e-5)


def test_anneal_is_computed_from_the_step_inside_the_jit():
  cfg = apply_overrides(Config(), ["baseline.multvae_beta_cap=0.3", "baseline.multvae_anneal_steps=100"])
  st = RECIPE.static(cfg)
  m = model(2)
  ids, lens = lists(2)
  batch = recipe_batch(ids, lens, np.ones(4, bool))
  traces = []

  @jax.jit
  def beta_at(step):
    traces.append(1)
    return RECIPE.loss(m, batch, step, jax.random.PRNGKey(0), st)[1]["beta"]

  got = [float(beta_at(jnp.asarray(s, jnp.int32))) for s in (0, 10, 25, 30, 99, 5000)]
  np.testing.assert_allclose(got, [0.0, 0.1, 0.25, 0.3, 0.3, 0.3], rtol=1e-6)
  assert len(traces) == 1


def test_scorer_ranks_by_the_decoder_logits_of_mu_without_dropout():
  m = model(4)
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  scorer = RECIPE.scorer(graphdef, m, item_chunk=8)
  ids, lens = lists(4)
  state = scorer.prepare((params, rest), {"a1_ids": jnp.asarray(ids), "a1_len": jnp.asarray(lens)})
  _, _, logits, _ = numpy_terms(weights(m), ids, lens, None, np.zeros((4, P)))   # no dropout, ε = 0: z = μ
  items = jnp.array([29, 0, 5, 5, 17])
  np.testing.assert_allclose(scorer.score((params, rest), state, items), logits[:, np.asarray(items)],
                             rtol=1e-5, atol=1e-5)
  assert get_recipe("multvae") is RECIPE


def test_multvae_beats_popularity_on_planted_data(tiny_data, tmp_path):
  """Default architecture (600-200-600, dropout 0.5), 15 epochs of 5 steps at batch 64."""
  cfg = small_cfg("model.name=multvae", "train.batch_size=64", "train.epochs=15", "train.eval_every=5",
                  "train.patience=1000")
  vae = train_and_evaluate(cfg, tmp_path / "v", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  print("multvae", vae.test["ndcg@20"], vae.test["recall@20"], "popularity", pop.test["ndcg@20"],
        pop.test["recall@20"])
  assert vae.test["ndcg@20"] > 2.0 * pop.test["ndcg@20"], (vae.test["ndcg@20"], pop.test["ndcg@20"])
  assert vae.test["recall@20"] > 1.8 * pop.test["recall@20"], (vae.test["recall@20"], pop.test["recall@20"])
