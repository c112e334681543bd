"""XploVAE as a Flax NNX module: shapes, one scoring interface, both kernels agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xplo_jax import XploVAE
from xplo_jax.models.xplovae import choose_conv_kernel

V, KN, B = 60, 7, 4


def graph(seed=0):
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.choice(np.delete(np.arange(V), i), KN, replace=False) for i in range(V)])
  return ids, rng.integers(0, KN + 1, V)


def batch(seed=0, w1=64, w2=64):
  rng = np.random.default_rng(seed)
  a1 = rng.integers(0, V, (B, w1)).astype(np.int32)
  a2 = rng.integers(0, V, (B, w2)).astype(np.int32)
  return {"a1_ids": jnp.asarray(a1), "a1_len": jnp.array([3, 0, 10, 64], jnp.int32),
          "a2_ids": jnp.asarray(a2), "a2_len": jnp.array([5, 2, 0, 1], jnp.int32)}


def make(kernel="dense", **kw):
  ids, cnt = graph()
  return XploVAE(V, ids, cnt, latent_dim=8, hidden_dim=16, conv_kernel=kernel, rngs=nnx.Rngs(0), **kw)


def test_import_and_shapes():
  m = make()
  b = batch()
  mu, logvar = m.encode(b)
  assert mu.shape == logvar.shape == (B, 8)
  z = mu
  assert m.proximity(z).shape == (B, 2, 3)
  assert m.item_embeddings(z).shape == (B, V, 3)
  assert m.logits(z, jnp.arange(5)).shape == (B, 2, 5)
  assert m.logits(z, jnp.zeros((B, 9), jnp.int32)).shape == (B, 2, 9)
  assert m(b)[0].shape == (B, 2, V)


@pytest.mark.parametrize("conv_layers", [1, 2, 3])
def test_logits_at_items_equal_full_logits_gathered_both_kernels(conv_layers):
  b = batch(1)
  dense, gather = make("dense", conv_layers=conv_layers), make("gather", conv_layers=conv_layers)
  z = jax.random.normal(jax.random.PRNGKey(0), (B, 8))
  full = np.asarray(dense.logits(z))
  shared = jnp.array([0, 59, 3, 3, 17])
  per_user = jax.random.randint(jax.random.PRNGKey(1), (B, 11), 0, V)
  for m in (dense, gather):
    np.testing.assert_allclose(m.logits(z), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.logits(z, shared), full[:, :, np.asarray(shared)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.logits(z, per_user),
                               np.take_along_axis(full, np.asarray(per_user)[:, None, :], axis=2),
                               rtol=1e-5, atol=1e-5)
  # Gradients of a loss through the whole model agree between kernels.
  def loss(model):
    logits, mu, lv = model(b, per_user)
    return jnp.sum(jnp.sin(logits)) + jnp.sum(mu ** 2)
  gd = nnx.grad(loss)(dense)
  gg = nnx.grad(loss)(gather)
  for a, c in zip(jax.tree.leaves(gd), jax.tree.leaves(gg)):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


def test_encoder_kernels_agree_and_padding_is_ignored():
  ids, cnt = graph()
  mk = lambda k: XploVAE(V, ids, cnt, latent_dim=8, hidden_dim=16, encoder_kernel=k, rngs=nnx.Rngs(0))
  b = batch(2)
  mu_d, lv_d = mk("dense").encode(b)
  mu_g, lv_g = mk("gather").encode(b)
  np.testing.assert_allclose(mu_d, mu_g, rtol=1e-5, atol=1e-6)
  # Changing ids beyond a row's length changes nothing.
  b2 = dict(b, a1_ids=b["a1_ids"].at[0, 3:].set(0))
  np.testing.assert_allclose(mk("dense").encode(b2)[0], mu_d, rtol=1e-6)
  # Dropout is random only with a key, and is the identity at evaluation.
  m = mk("dense")
  a = m.encode(b, key=jax.random.PRNGKey(0), train=True)[0]
  c = m.encode(b, key=jax.random.PRNGKey(1), train=True)[0]
  assert not np.allclose(a, c)
  with pytest.raises(ValueError, match="PRNG key"):
    m.encode(b, train=True)


def test_first_order_only_and_positive_conv_weights():
  ids, cnt = graph()
  m = XploVAE(V, ids, cnt, orders=1, latent_dim=8, hidden_dim=16, rngs=nnx.Rngs(0))
  b = {"a1_ids": batch()["a1_ids"], "a1_len": batch()["a1_len"]}        # no second-order input needed
  assert m(b)[0].shape == (B, 1, V)
  om = np.asarray(make()._omega(0))
  mask = np.asarray(make().nbr_mask[...])
  assert (om[mask > 0] > 0).all() and (om[mask == 0] == 0).all()


def test_choose_kernel_and_bad_arguments():
  assert choose_conv_kernel("auto", 1000, 3, 2, 1024) == "dense"
  assert choose_conv_kernel("auto", 234_647, 3, 2, 1024) == "gather"
  ids, cnt = graph()
  with pytest.raises(ValueError, match="orders"):
    XploVAE(V, ids, cnt, orders=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="knn_ids"):
    XploVAE(V + 1, ids, cnt, rngs=nnx.Rngs(0))
