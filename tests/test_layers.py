"""The kNN convolution kernels and the embedding bag against dense references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax.models import layers


def graph(v=40, k=6, seed=0):
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.choice(np.delete(np.arange(v), i), k, replace=False) for i in range(v)]).astype(np.int32)
  count = rng.integers(0, k + 1, v)                      # some items with fewer neighbours
  nbr, mask = layers.neighbour_table(ids, count)
  omega = jnp.asarray(rng.random((v, k + 1, 3)).astype(np.float32) + 0.1) * mask[..., None]
  return jnp.asarray(nbr), jnp.asarray(mask), omega


def explicit_matrix(nbr, omega):
  """The |V|×|V| weight matrix per d, built entry by entry in numpy."""
  nbr, omega = np.asarray(nbr), np.asarray(omega)
  v, j, d = omega.shape
  w = np.zeros((d, v, v), np.float64)
  for a in range(v):
    for s in range(j):
      w[:, a, nbr[a, s]] += omega[a, s]
  return w


def test_neighbour_table_slot_zero_is_self_and_padding_masked():
  ids = np.array([[1, 2], [0, 2], [1, 0]])
  nbr, mask = layers.neighbour_table(ids, np.array([2, 1, 0]))
  assert nbr[:, 0].tolist() == [0, 1, 2]
  assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
  assert nbr[1, 2] == 1 and nbr[2, 1] == 2 and nbr[2, 2] == 2     # padded slots point at self


@pytest.mark.parametrize("items_kind", ["all", "shared", "per_user"])
def test_conv_kernels_equal_explicit_matrix_values_and_gradients(items_kind):
  nbr, mask, omega = graph()
  b, v = 5, nbr.shape[0]
  s = jax.random.normal(jax.random.PRNGKey(1), (b, v, 3))
  w = explicit_matrix(nbr, omega)
  want_full = np.einsum("dvw,bwd->bvd", w, np.asarray(s, np.float64))
  items = {"all": None, "shared": jnp.array([3, 0, 17, 39, 3]),
           "per_user": jax.random.randint(jax.random.PRNGKey(2), (b, 9), 0, v)}[items_kind]
  if items is None:
    want = want_full
  elif items.ndim == 1:
    want = want_full[:, np.asarray(items)]
  else:
    want = np.take_along_axis(want_full, np.asarray(items)[..., None], axis=1)
  for fn in (layers.conv_dense, layers.conv_gather):
    np.testing.assert_allclose(fn(s, omega, nbr, items), want, rtol=1e-5, atol=1e-5)
  # Gradients with respect to the input and to the weights, kernel against kernel and reference.
  cot = jax.random.normal(jax.random.PRNGKey(3), np.shape(want))
  loss = lambda fn: (lambda s_, o_: jnp.sum(fn(s_, o_, nbr, items) * cot))
  gd = jax.grad(loss(layers.conv_dense), argnums=(0, 1))(s, omega)
  gg = jax.grad(loss(layers.conv_gather), argnums=(0, 1))(s, omega)
  ref = lambda s_, o_: jnp.sum((layers.conv_reference(s_, o_, nbr) if items is None else
                                layers.gather_items(layers.conv_reference(s_, o_, nbr), items)) * cot)
  gr = jax.grad(ref, argnums=(0, 1))(s, omega)
  for a, b_, c in zip(gd, gg, gr):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b_, c, rtol=1e-4, atol=1e-5)


def test_conv_gather_memory_does_not_scale_with_kn():
  """The compiled gather conv's temporaries stay O(B·N·D) as Kₙ grows (no [B, N, Kₙ+1, D])."""
  b, v, d, n = 32, 2000, 3, 256
  temps = []
  for k in (16, 64, 256):
    nbr = jnp.zeros((v, k + 1), jnp.int32)
    omega = jnp.ones((v, k + 1, d))
    s = jnp.ones((b, v, d))
    items = jnp.zeros((b, n), jnp.int32)
    f = jax.jit(jax.grad(lambda s_, o_: jnp.sum(layers.conv_gather(s_, o_, nbr, items)), argnums=(0, 1)))
    temps.append(f.lower(s, omega).compile().memory_analysis().temp_size_in_bytes)
  materialized = b * n * 257 * d * 4
  assert max(temps) < materialized / 10, temps
  assert temps[-1] < 1.5 * temps[0], temps          # flat in K_n: nothing of size B·N·K_n


@pytest.mark.parametrize("chunk", [8, 64])
def test_embedding_bags_equal_dense_sum(chunk):
  rng = np.random.default_rng(0)
  v, h, b, w = 50, 7, 4, 20
  table = jnp.asarray(rng.normal(size=(v, h)).astype(np.float32))
  ids = rng.integers(0, v, (b, w)).astype(np.int32)
  lens = np.array([0, 3, 20, 11])
  weights = (np.arange(w)[None, :] < lens[:, None]) * rng.random((b, w))
  want = np.zeros((b, h))
  for r in range(b):
    for j in range(lens[r]):
      want[r] += weights[r, j] * np.asarray(table)[ids[r, j]]
  for fn in (lambda *a: layers.bag_gather(*a, chunk=chunk), layers.bag_dense):
    np.testing.assert_allclose(fn(table, jnp.asarray(ids), jnp.asarray(weights, jnp.float32)), want,
                               rtol=1e-5, atol=1e-5)
  g1 = jax.grad(lambda t: jnp.sum(jnp.sin(layers.bag_gather(t, ids, weights.astype(np.float32), chunk))))(table)
  g2 = jax.grad(lambda t: jnp.sum(jnp.sin(layers.bag_dense(t, ids, weights.astype(np.float32)))))(table)
  np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-5)
