"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax import metrics as M


# User A: list hits at ranks 1 and 3 of 4, |I| = 2.  User B: hit at rank 4, |I| = 5.
HITS = jnp.array([[1, 0, 1, 0], [0, 0, 0, 1]])
NREL = jnp.array([2, 5])


def test_recall_normalized_and_plain():
  np.testing.assert_allclose(M.recall_at_k(HITS, NREL, 4), [2 / 2, 1 / 4])       # / min(K, |I|)
  np.testing.assert_allclose(M.hit_fraction_at_k(HITS, NREL, 4), [2 / 2, 1 / 5])  # / |I|
  np.testing.assert_allclose(M.recall_at_k(HITS, NREL, 2), [1 / 2, 0.0])


def test_ndcg_hand_computed():
  dcg_a = 1 / math.log2(2) + 1 / math.log2(4)
  idcg_a = 1 / math.log2(2) + 1 / math.log2(3)
  dcg_b = 1 / math.log2(5)
  idcg_b = sum(1 / math.log2(r + 1) for r in range(1, 5))
  np.testing.assert_allclose(M.ndcg_at_k(HITS, NREL, 4), [dcg_a / idcg_a, dcg_b / idcg_b], rtol=1e-6)
  np.testing.assert_allclose(M.ndcg_at_k(jnp.array([[1, 1, 0]]), jnp.array([2]), 3), [1.0], rtol=1e-6)


def test_pild_hand_computed():
  jac = jnp.array([[[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]]])
  # pairs (1,2): 0.5, (1,3): 1.0, (2,3): 0.75 -> mean 0.75
  np.testing.assert_allclose(M.pild_at_k(jac, 3), [0.75], rtol=1e-6)
  np.testing.assert_allclose(M.pild_at_k(jac, 2), [0.5], rtol=1e-6)


def test_coverage():
  top = jnp.array([[0, 1, 2], [1, 2, 3], [9, 9, 9]])
  assert float(M.coverage_at_k(top, 10, 2)) == pytest.approx(4 / 10)      # {0, 1} ∪ {1, 2} ∪ {9}
  assert float(M.coverage_at_k(top, 10, 3, valid=jnp.array([1, 0, 0]))) == pytest.approx(3 / 10)
