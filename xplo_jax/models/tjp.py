"""T(J&P) reconstruction: a LABELLED RECONSTRUCTION of Nakatsuji et al. (CIKM 2010).

"Classical Music for Rock Fans? Novel Recommendations for Expanding User
Interests" — identified from its abstract only; the full text, the meaning of
T/J/P, the exact similarity and the walk parameters were not found (baselines.md
§5). This module implements exactly the "Closest faithful reconstruction" of
baselines.md §5 and must be reported as "T(J&P) reconstruction", not as the
original method.

With R the binary [|U|, |V|] train matrix and an item → class taxonomy (flat):

1. Class interest (binary data): I_u(c) = |{i ∈ train(u): c ∈ class(i)}| / |train(u)|
   (the share of u's items in c; a multi-class item counts in each of its
   classes); C_u = {c : I_u(c) > 0}.
2. Similarity: J(u, v) = |C_u ∩ C_v| / |C_u ∪ C_v|; P(u, v) = Pearson correlation
   of I_u and I_v over C_u ∩ C_v (0 if fewer than 2 shared classes or a zero
   variance); sim(u, v) = J · max(P, 0), and sim(u, v) = 0 unless u ≠ v share at
   least one train item ("users who share same items").
3. User graph W: each user's top-k_g edges by sim (k_g = ``baseline.tjp_graph_k``,
   50), symmetrised as W = max(W_k, W_kᵀ); W̃ = W column-normalised; random walk
   with restart from every user a, r_a = (1 − c) W̃ r_a + c e_a with
   c = ``baseline.tjp_restart`` (0.15), by 30 power iterations from r = c·e_a
   (the truncated Neumann series c Σ_{s≤30} ((1−c)W̃)^s e_a; error ≤ (1−c)^31).
4. Neighbours: S_a = the k = ``baseline.tjp_neighbors`` (50) users with the
   largest sim(a, ·) > 0; G_a = the k users with the largest r_a(v) > 0, v ≠ a,
   v ∉ S_a (graph-related but not directly similar: the novelty suppliers).
5. score(a, i) = Σ_{v∈S_a} sim(a,v) R_vi / Σ_{v∈S_a} sim(a,v)
                 + λ_n · Σ_{v∈G_a} r_a(v) R_vi / Σ_{v∈G_a} r_a(v)
   (a term is 0 when its set is empty), λ_n chosen on VALIDATION NDCG@20 among
   ``baseline.tjp_novelty_weights`` (0, 0.25, 0.5, 1; ties → the earlier value).

Readings made (beyond baselines.md): the co-item condition of step 2 is applied
to sim itself, so it restricts S_a as well as the graph; top-k ties go to the
smaller user id (values equal to 12 decimals count as tied); |P| < 1e-12 is
rounding noise and counts as 0; the optional taxonomy-distance novelty factor is
not used (the datasets' taxonomies are flat, so there are no ancestor classes to
propagate counts to). Classes are ``data.split.categories``
(MovieLens genres, Taobao categories, the synthetic presets' planted clusters);
without categories, k-means (k = min(20, |V|), seeded) of the L2-normalised item
co-occurrence rows stands in — a deviation, logged as such.

Memory and time: similarities are computed in blocks of users ([b, |U|]
float64, ≈ 64 MB), the walk on a sparse W̃ in blocks of restart columns; the
stored scores are two dense [|U|, |V|] float32 matrices. The walk costs
30 · nnz(W̃) · |U| (nnz(W̃) ≤ 2·k_g·|U|): seconds at ML-100K/ML-1M size (943 /
6k users), practical on CPU up to ~20k users; ML-10M-sized (70k users) needs
hours on a CPU.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.models.ease import select_on_validation
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["RWR_ITERATIONS", "class_matrix", "class_interest", "jaccard_pearson", "topk_mask", "user_graph",
           "rwr", "neighbour_weights", "tjp_scores", "TJPRecipe", "RECIPE"]

RWR_ITERATIONS = 30
KMEANS_CLUSTERS = 20


def class_matrix(data: SubgraphData, seed: int = 0) -> sp.csr_matrix:
  """[|V|, C] 0/1 item → class matrix from ``data.split.categories`` (or the k-means fallback)."""
  cats = data.split.categories
  n_items = data.n_items
  if cats is not None and len(cats.item):
    n_cls = int(max(len(cats.names), int(np.max(cats.category)) + 1))
    m = sp.csr_matrix((np.ones(len(cats.item)), (np.asarray(cats.item), np.asarray(cats.category))),
                      shape=(n_items, n_cls))
    m.data[:] = 1.0                                       # duplicates → 1
    return m
  from scipy.cluster.vq import kmeans2
  k = min(KMEANS_CLUSTERS, n_items)
  log.warning("T(J&P) reconstruction: the data has no item categories; DEVIATION: k-means (k=%d) clusters "
              "of item co-occurrence vectors stand in for the taxonomy classes", k)
  x = data.split.train.csr(data.n_users, n_items, dtype=np.float64)
  co = (x.T @ x).toarray()
  norm = np.linalg.norm(co, axis=1, keepdims=True)
  co = co / np.where(norm > 0, norm, 1.0)
  _, labels = kmeans2(co, k, seed=seed, minit="++")
  return sp.csr_matrix((np.ones(n_items), (np.arange(n_items), labels)), shape=(n_items, k))


def class_interest(train: sp.spmatrix, classes: sp.spmatrix) -> np.ndarray:
  """I_u(c) = (number of u's train items in class c) / |train(u)|: [|U|, C] float64."""
  train = sp.csr_matrix(train, dtype=np.float64)
  counts = np.asarray((train @ sp.csr_matrix(classes, dtype=np.float64)).todense())
  deg = np.asarray(train.sum(axis=1)).ravel()
  return counts / np.where(deg > 0, deg, 1.0)[:, None]


def jaccard_pearson(interest_rows: np.ndarray, interest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """J and P of a block of users (rows) against all users, vectorised over shared classes.

  With m_c = [I_u(c) > 0][I_v(c) > 0] and n = Σ_c m_c, the Pearson correlation over
  the shared classes uses the masked sums Σ m I_u, Σ m I_v, Σ m I_u², Σ m I_v²,
  Σ I_u I_v (the last needs no mask: the product is 0 off the shared classes).

  Args:
    interest_rows: [b, C] I_u for the block; interest: [|U|, C] I_v for all users.

  Returns:
    J [b, |U|], P [b, |U|] float64 (P = 0 where n < 2 or a variance is 0).
  """
  xu, xv = np.asarray(interest_rows, np.float64), np.asarray(interest, np.float64)
  bu, bv = (xu > 0).astype(np.float64), (xv > 0).astype(np.float64)
  n = bu @ bv.T
  union = bu.sum(1)[:, None] + bv.sum(1)[None, :] - n
  jac = np.where(union > 0, n / np.where(union > 0, union, 1.0), 0.0)
  su, sv = xu @ bv.T, bu @ xv.T
  suu, svv = (xu * xu) @ bv.T, bu @ (xv * xv).T
  suv = xu @ xv.T
  nn = np.where(n > 0, n, 1.0)
  cov = suv - su * sv / nn
  var_u = suu - su * su / nn
  var_v = svv - sv * sv / nn
  # A variance that is 0 up to the cancellation error of the raw-sum formula counts as 0.
  ok = (n >= 2) & (var_u > 1e-12 * suu) & (var_v > 1e-12 * svv)
  den = np.sqrt(np.where(ok, var_u * var_v, 1.0))
  pearson = np.where(ok, cov / den, 0.0)
  # |P| < 1e-12 is the rounding noise of an exactly uncorrelated pair: 0, so that it makes no edge.
  pearson = np.where(np.abs(pearson) < 1e-12, 0.0, pearson)
  return jac, np.clip(pearson, -1.0, 1.0)


def topk_mask(values: np.ndarray, k: int) -> np.ndarray:
  """[b, n] → bool mask of each row's k largest entries > 0 (ties: the smaller column id).

  Values equal to 12 decimals count as tied: sim values are often mathematically
  equal (P = 1 with the same J) but differ in their last bits by summation order.
  """
  order = np.argsort(-np.round(values, 12), axis=1, kind="stable")[:, :k]
  keep = np.zeros(values.shape, bool)
  keep[np.arange(values.shape[0])[:, None], order] = True
  return keep & (values > 0)


def _blocks(n: int, width: int, block_bytes: int):
  step = max(1, block_bytes // (8 * max(1, width)))
  for s in range(0, n, step):
    yield s, min(n, s + step)


def user_similarity(train: sp.spmatrix, interest: np.ndarray, rows: slice) -> np.ndarray:
  """sim(a, v) = J · max(P, 0) for users a in ``rows``, 0 without a shared item or for v = a: [b, |U|]."""
  train = sp.csr_matrix(train, dtype=np.float64)
  jac, pearson = jaccard_pearson(interest[rows], interest)
  shared = (train[rows] @ train.T).toarray() > 0
  sim = jac * np.maximum(pearson, 0.0) * shared
  idx = np.arange(rows.start, rows.stop)
  sim[idx - rows.start, idx] = 0.0
  return sim


def user_graph(train: sp.spmatrix, interest: np.ndarray, graph_k: int, neighbors: int,
               block_bytes: int = 64 << 20) -> tuple[sp.csr_matrix, sp.csr_matrix]:
  """The symmetrised top-k_g similarity graph W and the exploitation sets S_a.

  Returns:
    W [|U|, |U|] CSR (W = max(W_k, W_kᵀ)); S [|U|, |U|] CSR with S[a, v] = sim(a, v)
    for v ∈ S_a.
  """
  n = interest.shape[0]
  graph, near = [], []
  for s, e in _blocks(n, n, block_bytes):
    sim = user_similarity(train, interest, slice(s, e))
    graph.append(sp.csr_matrix(np.where(topk_mask(sim, graph_k), sim, 0.0)))
    near.append(sp.csr_matrix(np.where(topk_mask(sim, neighbors), sim, 0.0)))
  wk = sp.vstack(graph).tocsr()
  return wk.maximum(wk.T).tocsr(), sp.vstack(near).tocsr()


def rwr(w: sp.spmatrix, restart: float, columns: np.ndarray, iterations: int = RWR_ITERATIONS) -> np.ndarray:
  """Random walk with restart from each user in ``columns``: r_a = (1 − c) W̃ r_a + c e_a.

  W̃ is W with every column divided by its sum (zero columns stay zero). Starting
  from r = c·e_a, each power iteration adds one term of the Neumann series.

  Args:
    w: [n, n] non-negative symmetric weights.
    restart: c.
    columns: [b] restart users a.
    iterations: power iterations.

  Returns:
    [n, b] float64, column j = r_{columns[j]}.
  """
  w = sp.csc_matrix(w, dtype=np.float64)
  col = np.asarray(w.sum(axis=0)).ravel()
  wt = (w @ sp.diags(np.where(col > 0, 1.0 / np.where(col > 0, col, 1.0), 0.0))).tocsr()
  e = np.zeros((w.shape[0], len(columns)))
  e[columns, np.arange(len(columns))] = restart
  x = e.copy()
  for _ in range(iterations):
    x = (1.0 - restart) * (wt @ x) + e
  return x


def neighbour_weights(w: sp.spmatrix, near: sp.csr_matrix, restart: float, neighbors: int,
                      iterations: int = RWR_ITERATIONS, block_bytes: int = 64 << 20) -> sp.csr_matrix:
  """G[a, v] = r_a(v) for v ∈ G_a: the top-k walk scores outside S_a ∪ {a}: [|U|, |U|] CSR."""
  n = w.shape[0]
  out = []
  for s, e in _blocks(n, n, block_bytes):
    r = rwr(w, restart, np.arange(s, e), iterations).T                    # [b, n]: row a = r_a
    blocked = near[s:e].toarray() > 0
    blocked[np.arange(e - s), np.arange(s, e)] = True
    r = np.where(blocked, 0.0, r)
    out.append(sp.csr_matrix(np.where(topk_mask(r, neighbors), r, 0.0)))
  return sp.vstack(out).tocsr()


def _row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
  s = np.asarray(m.sum(axis=1)).ravel()
  return (sp.diags(np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)) @ m).tocsr()


def tjp_scores(train: sp.spmatrix, classes: sp.spmatrix, *, graph_k: int, neighbors: int, restart: float,
               iterations: int = RWR_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
  """The two score terms of step 5: exploitation [|U|, |V|] and novelty [|U|, |V|] (float64)."""
  train = sp.csr_matrix(train, dtype=np.float64)
  interest = class_interest(train, classes)
  w, near = user_graph(train, interest, graph_k, neighbors)
  novel_w = neighbour_weights(w, near, restart, neighbors, iterations)
  exploit = np.asarray((_row_normalize(near) @ train).todense())
  novel = np.asarray((_row_normalize(novel_w) @ train).todense())
  return exploit, novel


@dataclasses.dataclass(frozen=True)
class TJPRecipe(Recipe):
  """T(J&P) reconstruction (a labelled reconstruction; see the module docstring)."""
  name: ClassVar[str] = "tjp"
  trainable: ClassVar[bool] = False

  def fit(self, cfg: Config, data: SubgraphData) -> dict:
    bc = cfg.baseline
    weights = tuple(float(v) for v in bc.tjp_novelty_weights) or (0.0,)
    if not 0.0 < bc.tjp_restart <= 1.0:
      raise ValueError(f"baseline.tjp_restart must lie in (0, 1], got {bc.tjp_restart}")
    classes = class_matrix(data, cfg.train.seed)
    train = data.split.train.csr(data.n_users, data.n_items, dtype=np.float64)
    exploit, novel = tjp_scores(train, classes, graph_k=bc.tjp_graph_k, neighbors=bc.tjp_neighbors,
                                restart=bc.tjp_restart)
    base = {"exploit": jax.device_put(jnp.asarray(exploit, jnp.float32)),
            "novel": jax.device_put(jnp.asarray(novel, jnp.float32))}
    cands = [{**base, "novelty_weight": jnp.float32(v)} for v in weights]
    if len(cands) == 1:                    # nothing to choose: no validation pass
      best, values = 0, [float("nan")]
    else:
      best, values, _ = select_on_validation(self.scorer(None, None, cfg.eval.item_chunk), cands,
                                             lambda u: self.eval_inputs({}, u), cfg, data, "T(J&P) reconstruction")
    for v, m in zip(weights, values):
      log.info("T(J&P) reconstruction λ_n=%g: validation %s = %.5f", v, cfg.eval.select_metric, m)
    log.info("T(J&P) reconstruction: %d classes, chose λ_n=%g on validation %s", classes.shape[1],
             weights[best], cfg.eval.select_metric)
    return {**cands[best], "novelty_grid": jnp.asarray(weights, jnp.float32),
            "novelty_valid": jnp.asarray(values, jnp.float32)}

  def describe(self, params) -> dict:
    """{"novelty_weight", "novelty_grid", "novelty_valid"}: the λ_n chosen on validation."""
    return {"novelty_weight": float(params["novelty_weight"]),
            "novelty_grid": [float(v) for v in np.asarray(params["novelty_grid"])],
            "novelty_valid": [float(v) for v in np.asarray(params["novelty_valid"])]}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"users": np.asarray(users, np.int32)}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    def prepare(params, inputs):
      u = inputs["users"]
      return (jnp.take(params["exploit"], u, axis=0)
              + params["novelty_weight"] * jnp.take(params["novel"], u, axis=0))

    def score(params, state, items):
      return jnp.take(state, items, axis=1)

    return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)


RECIPE = TJPRecipe()
