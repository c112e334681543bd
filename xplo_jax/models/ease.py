"""EASE (Steck, WWW 2019): a closed-form linear item–item model.

Objective (Steck 2019, eq. 1–2): with X the binary [|U|, |V|] train matrix,

    min_B ‖X − X B‖²_F + λ‖B‖²_F   subject to   diag(B) = 0,

whose solution (eq. 8) is, with P = (XᵀX + λI)⁻¹,

    B = I − P · diag(1 / diag(P)),      i.e. B_ij = −P_ij / P_jj (i ≠ j), B_jj = 0,

and the scores of user u are the row x_u B (train items are masked by the
evaluator).

Defaults and choices:

* λ is chosen inside ``fit`` on VALIDATION NDCG@20 (``eval.select_metric``; train
  items excluded, the test set never read) among ``baseline.ease_lambdas`` =
  (10, 50, 100, 200, 500, 1000, 2000) — the paper tunes λ per dataset ("the only
  hyper-parameter"); Steck's ML-20M / Netflix values (500 / 1000) lie inside the
  grid. Ties go to the earlier λ of the grid. The chosen λ and the validation
  value of every λ are logged and returned in ``params['lambda']`` /
  ``params['lambda_grid']`` / ``params['lambda_valid']`` (``EASERecipe.describe``).
* The Gram matrix is inverted in float64 on the host (numpy), B is stored and
  scored in float32.
* Memory: dense [|V|, |V|] matrices (G, P, B; float64 at fit time): practical to
  ~20k items (Netflix's 17.8k: 2.5 GB per float64 matrix); fit time O(|V|³) per λ.

The helpers ``train_lists``, ``multi_hot``, ``linear_item_scorer`` and
``select_on_validation`` are shared with the other memory-based baselines
(ItemKNN, T(J&P) reconstruction).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, ClassVar, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer, evaluate_ranking, padded_lists
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["ease_weights", "train_lists", "multi_hot", "linear_item_scorer", "select_on_validation",
           "EASERecipe", "RECIPE"]


# ----------------------------------------------------------------------------- shared helpers

def train_lists(train: sp.csr_matrix, width_multiple: int = 64) -> dict[str, np.ndarray]:
  """Every user's train items as a padded list, the layout of ``batch['a1_ids']`` / ``a1_len``.

  Args:
    train: [|U|, |V|] 0/1 CSR matrix.
    width_multiple: the padded width is rounded up to a multiple of this (static shapes).

  Returns:
    {"a1_ids": [|U|, W] int32 (0 on padding), "a1_len": [|U|] int32}.
  """
  train = train.tocsr()
  train.sort_indices()
  widest = int(np.diff(train.indptr).max(initial=0))
  width = max(width_multiple, -(-widest // width_multiple) * width_multiple)
  ids, lens = padded_lists(train, np.arange(train.shape[0]), width)
  return {"a1_ids": ids, "a1_len": lens}


def multi_hot(ids: jax.Array, lens: jax.Array, n_items: int) -> jax.Array:
  """Rows x_u of the train matrix from padded id lists: [B, W], [B] → [B, n_items] float32.

  Padded slots add 0 (their id is whatever the padding holds), so they never set an item.
  """
  b, w = ids.shape
  present = (jnp.arange(w)[None, :] < lens[:, None]).astype(jnp.float32)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, w))
  return jnp.zeros((b, n_items), jnp.float32).at[rows, ids].add(present)


def linear_item_scorer(weights_key: str, item_chunk: int) -> Scorer:
  """Scores x_u W[:, items] for an item–item matrix ``params[weights_key]`` [|V|, |V|].

  Inputs: ``a1_ids`` / ``a1_len`` (the train lists). ``prepare`` rebuilds x_u once per
  user batch; ``score`` is one [B, |V|] × [|V|, C] product per item chunk.
  """
  def prepare(params, inputs):
    return multi_hot(inputs["a1_ids"], inputs["a1_len"], params[weights_key].shape[0])

  def score(params, x, items):
    return x @ jnp.take(params[weights_key], items, axis=1)

  return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)


def _select_k(metric: str) -> int:
  try:
    return int(metric.split("@", 1)[1])
  except (IndexError, ValueError):
    raise ValueError(f"eval.select_metric {metric!r}: expected NAME@K, e.g. ndcg@20") from None


def select_on_validation(scorer: Scorer, candidates: Iterable[Any], inputs_fn: Callable[[np.ndarray], dict],
                         cfg: Config, data: SubgraphData, what: str) -> tuple[int, list[float], Any]:
  """The candidate params with the best VALIDATION ``eval.select_metric``.

  Each candidate is ranked on ``data.split.valid`` with the train items excluded
  (the evaluator's protocol); the test split is never read. Ties go to the earlier
  candidate. Candidates may come from a generator: only the best so far is kept,
  so memory holds two candidates at most. Without validation users
  (``data.valid_frac=0``) the first candidate is kept, with a warning.

  Args:
    scorer: built once (all candidates must share shapes: one compilation).
    candidates: params pytrees (a list or a generator).
    inputs_fn: users [B] → the scorer's host inputs.
    cfg, data: the run's config and data.
    what: a label for the log lines (e.g. "EASE").

  Returns:
    (best index, the metric of every candidate (NaN without validation users), best params).
  """
  metric = cfg.eval.select_metric
  k = _select_k(metric)
  split = data.split
  values, best, best_params = [], -1, None
  for i, params in enumerate(candidates):
    if len(split.valid) == 0:
      values.append(float("nan"))
      if best < 0:
        log.warning("%s: no validation users; keeping the first candidate", what)
        best, best_params = 0, params
      continue
    params = jax.device_put(params)
    res = evaluate_ranking(scorer, params, inputs_fn, split.valid, [split.train], data.n_users, data.n_items,
                           ks=(k,), user_batch=cfg.eval.user_batch)
    values.append(float(res[metric]))
    if best < 0 or values[-1] > values[best]:      # strict: ties go to the earlier candidate
      best, best_params = i, params
  if best < 0:
    raise ValueError(f"{what}: no candidate to select from")
  return best, values, best_params


# ----------------------------------------------------------------------------- EASE

def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
  """B = I − P diag(1/diag P), P = (G + λI)⁻¹ (Steck 2019 eq. 8); diag(B) = 0.

  Args:
    gram: [|V|, |V|] G = XᵀX (float64 recommended).
    lam: the L2 weight λ > 0.

  Returns:
    [|V|, |V|] float64 B.
  """
  n = gram.shape[0]
  p = np.linalg.inv(gram + lam * np.eye(n))
  b = -p / np.diag(p)[None, :]          # B_ij = −P_ij / P_jj
  np.fill_diagonal(b, 0.0)
  return b


@dataclasses.dataclass(frozen=True)
class EASERecipe(Recipe):
  """EASE with λ chosen on validation NDCG@20 (see the module docstring)."""
  name: ClassVar[str] = "ease"
  trainable: ClassVar[bool] = False

  def fit(self, cfg: Config, data: SubgraphData) -> dict:
    lams = tuple(float(l) for l in cfg.baseline.ease_lambdas)
    if not lams or min(lams) <= 0:
      raise ValueError(f"baseline.ease_lambdas must be positive values, got {lams}")
    x = data.split.train.csr(data.n_users, data.n_items, dtype=np.float64)
    gram = (x.T @ x).toarray()
    lists = train_lists(x)
    inputs_fn = lambda users: self.eval_inputs(lists, users)
    scorer = linear_item_scorer("B", cfg.eval.item_chunk)
    cands = ({"B": jnp.asarray(ease_weights(gram, l), jnp.float32), "lambda": jnp.float32(l)} for l in lams)
    if len(lams) == 1:                     # nothing to choose: no validation pass
      best, values, params = 0, [float("nan")], next(cands)
    else:
      best, values, params = select_on_validation(scorer, cands, inputs_fn, cfg, data, "EASE")
    for l, v in zip(lams, values):
      log.info("EASE λ=%g: validation %s = %.5f", l, cfg.eval.select_metric, v)
    log.info("EASE: chose λ=%g on validation %s", lams[best], cfg.eval.select_metric)
    return {**params, "lambda_grid": jnp.asarray(lams, jnp.float32),
            "lambda_valid": jnp.asarray(values, jnp.float32)}

  def describe(self, params) -> dict:
    """The choices ``fit`` made, for reports: {"lambda", "lambda_grid", "lambda_valid"}."""
    return {"lambda": float(params["lambda"]),
            "lambda_grid": [float(v) for v in np.asarray(params["lambda_grid"])],
            "lambda_valid": [float(v) for v in np.asarray(params["lambda_valid"])]}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"a1_ids": arrays["a1_ids"][users], "a1_len": arrays["a1_len"][users]}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    return linear_item_scorer("B", item_chunk)


RECIPE = EASERecipe()
