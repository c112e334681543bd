"""EASE: the closed form against an independent constrained least squares, λ selection on validation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax.data.types import Pairs
from xplo_jax.models import ease
from xplo_jax.train import train_and_evaluate

from tiny import small_cfg



def constrained_ls(x: np.ndarray, lam: float, columns=None) -> np.ndarray:
  """argmin ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0, column by column: the ridge regression of x_j
  on the other columns (its normal equations), with no Lagrange multiplier or inverse of the
  full Gram matrix. Only ``columns`` are solved (default: all)."""
  n = x.shape[1]
  g = x.T @ x
  b = np.zeros((n, n))
  for j in range(n) if columns is None else columns:
    o = np.flatnonzero(np.arange(n) != j)
    b[o, j] = np.linalg.solve(g[np.ix_(o, o)] + lam * np.eye(n - 1), g[o, j])
  return b


@pytest.mark.parametrize("lam", [0.5, 3.0, 40.0])
def test_closed_form_equals_constrained_least_squares(lam):
  rng = np.random.default_rng(0)
  x = (rng.random((30, 9)) < 0.35).astype(np.float64)
  b = ease.ease_weights(x.T @ x, lam)
  np.testing.assert_allclose(b, constrained_ls(x, lam), atol=1e-10)
  assert np.all(np.diag(b) == 0)


def test_scorer_is_x_times_b():
  rng = np.random.default_rng(1)
  x = (rng.random((7, 11)) < 0.4).astype(np.float64)
  import scipy.sparse as sp
  lists = ease.train_lists(sp.csr_matrix(x), width_multiple=8)
  b = ease.ease_weights(x.T @ x, 2.0)
  scorer = ease.linear_item_scorer("B", item_chunk=4)
  params = {"B": jnp.asarray(b, jnp.float32)}
  users = np.array([3, 0, 6])
  state = scorer.prepare(params, {k: jnp.asarray(v[users]) for k, v in lists.items()})
  got = scorer.score(params, state, jnp.arange(2, 9))
  np.testing.assert_allclose(np.asarray(got), (x @ b)[users][:, 2:9], rtol=1e-5, atol=1e-5)


def valid_ndcg_numpy(data, lam: float, k: int = 20) -> float:
  """Validation NDCG@k of EASE(λ), computed without the project's evaluator."""
  split = data.split
  x = split.train.csr(data.n_users, data.n_items, dtype=np.float64).toarray()
  scores = x @ constrained_ls(x, lam)
  scores[x > 0] = -np.inf
  held = {}
  for u, i in zip(split.valid.user.tolist(), split.valid.item.tolist()):
    held.setdefault(u, set()).add(i)
  out = []
  for u, items in held.items():
    top = np.lexsort((np.arange(data.n_items), -scores[u]))[:k]       # ties: smaller id
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(top) if i in items)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(items))))
    out.append(dcg / idcg)
  return float(np.mean(out))


def test_lambda_chosen_on_validation_and_test_never_read(tiny_data):
  grid = (1.0, 300.0, 1e5)
  cfg = small_cfg("baseline.ease_lambdas=" + ",".join(str(l) for l in grid))
  params = ease.RECIPE.fit(cfg, tiny_data)
  ref = [valid_ndcg_numpy(tiny_data, l) for l in grid]
  assert len(set(np.round(ref, 3))) == 3                      # the grid's values are well separated
  np.testing.assert_allclose(np.asarray(params["lambda_valid"]), ref, atol=2e-4)
  assert float(params["lambda"]) == grid[int(np.argmax(ref))]
  info = ease.RECIPE.describe(params)
  assert info["lambda"] == grid[int(np.argmax(ref))] and info["lambda_grid"] == list(grid)
  cols = [0, 57, 199]
  x = tiny_data.split.train.csr(tiny_data.n_users, tiny_data.n_items).toarray().astype(np.float64)
  np.testing.assert_allclose(np.asarray(params["B"])[:, cols], constrained_ls(x, info["lambda"], cols)[:, cols],
                             atol=1e-5)
  # The test split plays no part: fitting without it gives the same model.
  empty = Pairs(np.zeros(0, np.int32), np.zeros(0, np.int32))
  blind = dataclasses.replace(tiny_data, split=dataclasses.replace(tiny_data.split, test=empty))
  again = ease.RECIPE.fit(cfg, blind)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, again))


def test_ease_beats_popularity_on_planted_data(tiny_data, tmp_path):
  res = train_and_evaluate(small_cfg("model.name=ease"), tmp_path / "e", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert res.test["ndcg@20"] > 1.5 * pop.test["ndcg@20"], (res.test["ndcg@20"], pop.test["ndcg@20"])
  assert res.test["recall@20"] > 1.5 * pop.test["recall@20"], (res.test["recall@20"], pop.test["recall@20"])


def test_without_validation_users_the_first_lambda_is_kept(tiny_data, caplog):
  empty = Pairs(np.zeros(0, np.int32), np.zeros(0, np.int32))
  blind = dataclasses.replace(tiny_data, split=dataclasses.replace(tiny_data.split, valid=empty))
  params = ease.RECIPE.fit(small_cfg("baseline.ease_lambdas=7,300"), blind)
  assert float(params["lambda"]) == 7.0 and np.all(np.isnan(np.asarray(params["lambda_valid"])))
  assert "no validation users" in caplog.text
