"""The stratified estimator, its sampler, the exact likelihood, KL and the β schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from xplo_jax import losses
from xplo_jax.preprocess.labels import POSITIVE_LABEL, Q_CLASS


def random_labels(b=6, v=300, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.choice(5, size=(b, v), p=[0.05, 0.1, 0.35, 0.3, 0.2]).astype(np.uint8)
  labels[0, :] = np.where(labels[0] == 3, 2, labels[0])        # user 0: stratum Q=5 empty
  labels[1, :] = np.where(labels[1] == 4, 3, labels[1])        # user 1: stratum Q>=7 empty
  return labels


def exact_loglik(eta: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """log p(A | z) by its definition: Bernoulli(σ(η)) over both rows, all items."""
  out = np.zeros(eta.shape[0])
  for k in range(eta.shape[1]):
    a = labels == POSITIVE_LABEL[k]
    p = 1 / (1 + np.exp(-eta[:, k].astype(np.float64)))
    out += np.sum(np.where(a, np.log(p), np.log1p(-p)), axis=1)
  return out


def test_full_loglik_equals_definition():
  labels = random_labels()
  eta = np.random.default_rng(1).normal(size=(labels.shape[0], 2, labels.shape[1])).astype(np.float32)
  np.testing.assert_allclose(losses.full_loglik(jnp.asarray(eta), jnp.asarray(labels)),
                             exact_loglik(eta, labels), rtol=1e-5)


def test_stratum_plan():
  assert losses.stratum_plan(2, "stratified", (8,), 0) == ((0, 1, 8), (0, 2, 8), (0, 3, 8),
                                                          (1, 0, 8), (1, 1, 8), (1, 2, 8), (1, 3, 8))
  assert losses.stratum_plan(1, "stratified", (1, 2, 3, 0), 0) == ((0, 1, 2), (0, 2, 3))
  assert losses.stratum_plan(2, "uniform", (8,), 5) == ((0, -1, 5), (1, -1, 5))
  with pytest.raises(ValueError, match="1 or 4 values"):
    losses.stratum_plan(2, "stratified", (1, 2), 0)


def test_sampler_draws_only_members_of_the_stratum_uniformly():
  labels = random_labels(b=4, v=200, seed=2)
  plan = losses.stratum_plan(2, "stratified", (4000,), 0)
  ids, w, row = losses.sample_zeros(jax.random.PRNGKey(0), jnp.asarray(labels), plan)
  ids, w, row = np.asarray(ids), np.asarray(w), np.asarray(row)
  col = 0
  for k, t, n in plan:
    for u in range(labels.shape[0]):
      members = np.flatnonzero((labels[u] != POSITIVE_LABEL[k]) & (Q_CLASS[labels[u]] == t))
      drawn = ids[u, col:col + n]
      np.testing.assert_allclose(w[u, col:col + n], len(members) / n)
      if len(members) == 0:
        assert np.all(w[u, col:col + n] == 0)
        continue
      assert np.isin(drawn, members).all(), (k, t, u)
      counts = np.array([np.sum(drawn == m) for m in members])
      if len(members) > 1:                        # uniform over the members (χ² test)
        assert stats.chisquare(counts).pvalue > 1e-4, (k, t, u)
    assert (row[col:col + n] == k).all()
    col += n


def test_stratified_estimator_is_unbiased_for_the_exact_likelihood():
  """Mean of ℓ̂ over many draws = the exact log-likelihood (within Monte-Carlo error)."""
  labels = random_labels(b=5, v=250, seed=3)
  rng = np.random.default_rng(4)
  eta = rng.normal(size=(5, 2, 250)).astype(np.float32) * 2
  exact = exact_loglik(eta, labels)
  labels_j, eta_j = jnp.asarray(labels), jnp.asarray(eta)
  w1 = w2 = 250
  a1 = np.stack([np.where(labels[u] == 0, np.arange(250), 0) for u in range(5)])
  m1 = (labels == 0).astype(np.float32)
  m2 = (labels == 1).astype(np.float32)
  plan = losses.stratum_plan(2, "stratified", (3,), 0)

  @jax.jit
  def one(key):
    ids, w, row = losses.sample_zeros(key, labels_j, plan)
    eta_neg = jnp.where(row[None, :] == 0, jnp.take_along_axis(eta_j[:, 0], ids, 1),
                        jnp.take_along_axis(eta_j[:, 1], ids, 1))
    return losses.sampled_loglik(eta_j[:, 0], jnp.asarray(m1), eta_neg, w, eta_j[:, 1], jnp.asarray(m2))

  draws = np.asarray(jax.vmap(one)(jax.random.split(jax.random.PRNGKey(5), 4000)), np.float64)
  mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
  assert np.all(np.abs(mean - exact) < 4.5 * se + 1e-3), (mean, exact, se)
  assert np.all(se > 0)                                  # it is a real Monte-Carlo estimate
  del a1, w1, w2


def test_uniform_negatives_are_unbiased_too():
  labels = random_labels(b=3, v=120, seed=6)
  eta = np.random.default_rng(7).normal(size=(3, 1, 120)).astype(np.float32)
  exact = exact_loglik(eta, labels)
  plan = losses.stratum_plan(1, "uniform", (0,), 5)
  m1 = jnp.asarray((labels == 0).astype(np.float32))

  def one(key):
    ids, w, _ = losses.sample_zeros(key, jnp.asarray(labels), plan)
    return losses.sampled_loglik(jnp.asarray(eta[:, 0]), m1, jnp.take_along_axis(jnp.asarray(eta[:, 0]), ids, 1), w)

  draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(8), 4000)), np.float64)
  se = draws.std(0) / np.sqrt(len(draws))
  assert np.all(np.abs(draws.mean(0) - exact) < 4.5 * se + 1e-3)


def test_kl_matches_closed_form_and_schedule():
  mu = jnp.array([[0.0, 1.0], [2.0, -1.0]])
  logvar = jnp.array([[0.0, np.log(2.0)], [-1.0, 0.5]])
  want = 0.5 * np.sum(np.exp(logvar) + np.asarray(mu) ** 2 - 1 - logvar, axis=1)
  np.testing.assert_allclose(losses.kl_standard_normal(mu, logvar), want, rtol=1e-6)
  assert float(losses.kl_standard_normal(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0
  assert float(losses.kl_weight(jnp.int32(10), 0.2, "constant", 100)) == pytest.approx(0.2)
  assert float(losses.kl_weight(jnp.int32(10), 0.2, "linear", 100)) == pytest.approx(0.1)
  assert float(losses.kl_weight(jnp.int32(1000), 0.2, "linear", 100)) == pytest.approx(0.2)
  # Computed from the step inside the jit: a traced step gives per-step values.
  f = jax.jit(lambda s: losses.kl_weight(s, 0.2, "linear", 100))
  assert [round(float(f(jnp.int32(s))), 4) for s in (0, 5, 50)] == [0.0, 0.05, 0.2]
