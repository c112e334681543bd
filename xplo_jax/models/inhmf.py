"""INH-MF (Lian et al., KDD 2018): binary codes from high-order proximity by discrete MF.

Objective as read from the authors' MATLAB code (``DefuLian/network``:
``transform_network.m``, ``dne_ao_itq.m``, ``proj_hamming_balance.m``,
``proj_stiefel_manifold.m``, ``script.m``; baselines.md §3), on the bipartite
train graph A = [[0, R], [Rᵀ, 0]] over n = |U| + |V| nodes (users first):

1. Proximity (NetMF-style, ``transform_network``):
       S = vol / (b·T) · Σ_{t=1..T} (D⁻¹A)ᵗ D⁻¹,   M = log S where S > 1, else 0,
   d = row sums of A (+1e-10, as the code), vol = Σ d, b = 1.
2. Discrete MF: min ‖M − B Qᵀ‖²_F  s.t.  B ∈ {±1}^{n×r}, each bit balanced,
   QᵀQ = I_r; (+ γ/2‖B − B̂‖²_F with B̂ = √n·polar(B)).
3. Init B₀ = bal_sign(U S) from the rank-r truncated SVD M ≈ U S Vᵀ (``script.m``).
4. Alternate, ``baseline.inhmf_iterations`` times (``dne_ao_itq``):
       Q = P Wᵀ  with  P Σ Wᵀ = thin-SVD(Mᵀ B)           (orthogonal Procrustes)
       B = bal_sign(M Q + γ B̂)
5. score(u, i) = b_uᵀ b_i = r − 2·Hamming(b_u, b_i) (user and item codes are rows
   of the same B, as the authors' ``evaluate_item(train, test, B, B)``).

Defaults and choices (``baseline.inhmf_*``):

* r = 128 bits (the authors' default), γ = 0 (their main runs), 50 iterations
  (``dne_ao_itq``'s ``max_iter``), T = 3: the authors used T = 1 (Wiki, Flickr)
  or 10 (BlogCatalog, PPI); on a bipartite graph T = 1 is only a PMI-weighted
  user–item adjacency, T = 3 adds the user→item→user→item paths that make the
  proximity "high-order" (T = 2 adds user–user and item–item entries, which
  shape the shared codes but no user–item entry). The paper does not say which T
  XploVAE used; on the tiny planted preset T = 1 ranks below popularity while
  T = 2 and 3 are well above it. T is computed exactly (sparse powers applied to dense row
  blocks), not through the authors' low-rank NetMF shortcut for T > 1.
* bal_sign: per column, +1 on the ⌈n/2⌉ largest values, −1 on the rest — the
  authors' "≥ median → +1" whenever the values at the median are distinct; ties
  at the median go to the smaller node id so that every bit stays balanced
  (column sum exactly 0 for even n, +1 for odd n). With this rule both steps are
  exact maximisers, so for γ = 0 the objective never increases.
* The objective ‖M − BQᵀ‖²_F = ‖M‖²_F − 2 tr(Bᵀ M Q) + n·r is recorded after
  every iteration (``params['objective']``; ``INHMFRecipe.describe``).
* Truncated SVD: ``scipy.sparse.linalg.svds`` (ARPACK) with a start vector drawn
  from ``train.seed``; a dense LAPACK SVD when r ≥ n − 1.
* Ties: scores are integers spaced by 2, so ties are frequent; each (user,
  item) score gets a jitter in [0, 1) from an integer hash of (user, item,
  ``train.seed``) — it only reorders equal Hamming distances, independently per
  user. Remaining exact ties go to the smaller item id (the evaluator).
* Not implemented: the Hamming-subspace (ρ < 1) speed-up; every iteration
  updates all r bits (ρ = 1).

Memory and time: M is sparse (CSR, float64) built from dense row blocks of
≈ 64 MB, so memory is O(nnz(M)); with T ≥ 2 most entries survive (PMI > 0 for
about half the pairs), i.e. O(n²) in practice: fine for ML-100K (n = 2.6k) and
ML-1M (n ≈ 9.7k, ≲ 1 GB); beyond ~30k nodes use T = 1 (nnz(M) = nnz(R)·2).
Each iteration costs two sparse × [n, r] products and an [n, r] SVD.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["bipartite_adjacency", "proximity_matrix", "bal_sign", "truncated_svd", "discrete_mf",
           "pair_jitter", "INHMFRecipe", "RECIPE"]


def bipartite_adjacency(train: sp.spmatrix) -> sp.csr_matrix:
  """A = [[0, R], [Rᵀ, 0]]: [|U|+|V|, |U|+|V|] float64, users first."""
  r = sp.csr_matrix(train, dtype=np.float64)
  return sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float64)


def proximity_matrix(adj: sp.spmatrix, window: int, b: float = 1.0, block_bytes: int = 64 << 20) -> sp.csr_matrix:
  """M = log(vol/(b·T) Σ_{t=1..T} (D⁻¹A)ᵗ D⁻¹) on the entries where the argument is > 1, else 0.

  Args:
    adj: [n, n] symmetric adjacency.
    window: T ≥ 1.
    b: the negative-sampling constant (the authors' code: 1).
    block_bytes: memory of one dense float64 row block of S.

  Returns:
    [n, n] float64 CSR M (``transform_network.m``, symmetric branch).
  """
  if window < 1:
    raise ValueError(f"baseline.inhmf_window must be >= 1, got {window}")
  adj = sp.csr_matrix(adj, dtype=np.float64)
  n = adj.shape[0]
  d = np.asarray(adj.sum(axis=1)).ravel() + 1e-10          # as the code: isolated nodes give zero rows
  vol = float(adj.sum())
  walk = sp.diags(1.0 / d) @ adj                            # D⁻¹A
  walk_t = walk.T.tocsr()
  scale = vol / (b * window)
  rows, cols, vals = [], [], []
  step = max(1, block_bytes // (8 * max(1, n)))
  for s in range(0, n, step):
    e = min(n, s + step)
    power = walk[s:e].toarray()                             # rows s..e of (D⁻¹A)¹
    acc = power.copy()
    for _ in range(window - 1):
      power = (walk_t @ power.T).T                          # next power: power · (D⁻¹A)
      acc += power
    sblk = acc * (scale / d[None, :])
    r, c = np.nonzero(sblk > 1.0)
    rows.append(r + s)
    cols.append(c)
    vals.append(np.log(sblk[r, c]))
  m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
  m.sort_indices()
  return m


def bal_sign(x: np.ndarray) -> np.ndarray:
  """Balanced sign per column: +1 on the ⌈n/2⌉ largest values, −1 elsewhere (ties: smaller row first).

  Args:
    x: [n, r] real.

  Returns:
    [n, r] float64 in {−1, +1}; every column sums to 0 (n even) or +1 (n odd).
  """
  n = x.shape[0]
  order = np.argsort(-x, axis=0, kind="stable")
  out = -np.ones(x.shape, np.float64)
  cols = np.broadcast_to(np.arange(x.shape[1])[None, :], (-(-n // 2), x.shape[1]))
  out[order[:-(-n // 2)], cols] = 1.0
  return out


def truncated_svd(m: sp.spmatrix, r: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The r leading singular triplets' U [n, r] and singular values [r], in descending order."""
  n = min(m.shape)
  if r >= n - 1:
    u, s, _ = np.linalg.svd(m.toarray() if sp.issparse(m) else m, full_matrices=False)
    return u[:, :r], s[:r]
  v0 = np.random.default_rng(seed).standard_normal(n)
  u, s, _ = spla.svds(sp.csr_matrix(m), k=r, v0=v0, solver="arpack")
  order = np.argsort(-s, kind="stable")
  return u[:, order], s[order]


def discrete_mf(m: sp.spmatrix, bits: int, iterations: int, gamma: float = 0.0,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Balanced binary codes B and orthonormal Q minimising ‖M − BQᵀ‖²_F (``dne_ao_itq``).

  Args:
    m: [n, n] proximity matrix (sparse or dense).
    bits: r.
    iterations: alternating (Q, B) updates.
    gamma: weight of the decorrelation target B̂ = √n·polar(B).
    seed: the truncated SVD's start vector.

  Returns:
    B [n, r] float64 ±1, Q [n, r] float64 (QᵀQ = I), and the objective
    ‖M − BQᵀ‖²_F after every iteration, [iterations].
  """
  m = sp.csr_matrix(m, dtype=np.float64)
  n = m.shape[0]
  if not 1 <= bits <= n:
    raise ValueError(f"baseline.inhmf_bits must lie in [1, {n}] (the number of nodes), got {bits}")
  mt = m.T.tocsr()
  u, s = truncated_svd(m, bits, seed)
  b = bal_sign(u * s[None, :])
  m_sq = float(m.multiply(m).sum())
  q = np.zeros((n, bits))
  objective = []
  for _ in range(iterations):
    p, _, wt = np.linalg.svd(mt @ b, full_matrices=False)
    q = p @ wt                                             # Procrustes: argmax_Q tr(Qᵀ MᵀB)
    mq = m @ q
    target = mq
    if gamma:
      ub, _, vbt = np.linalg.svd(b, full_matrices=False)
      target = mq + gamma * np.sqrt(n) * (ub @ vbt)
    b = bal_sign(target)
    objective.append(m_sq - 2.0 * float(np.sum(b * mq)) + n * bits)   # ‖BQᵀ‖² = tr(BᵀB) = n·r
  return b, q, np.asarray(objective)


_M1, _M2, _M3, _M4 = (np.uint32(v) for v in (0x9E3779B1, 0x85EBCA77, 0x7FEB352D, 0x846CA68B))


def pair_jitter(users: jax.Array, items: jax.Array, seed: jax.Array) -> jax.Array:
  """A deterministic pseudo-random value in [0, 1) per (user, item): [B], [C] → [B, C] float32.

  The lowbias32 integer hash of (user·φ + item·c₂) ⊕ seed; its top 24 bits as a float.
  """
  x = users.astype(jnp.uint32)[:, None] * _M1 + items.astype(jnp.uint32)[None, :] * _M2
  x = x ^ seed.astype(jnp.uint32)
  x = x ^ (x >> 16)
  x = x * _M3
  x = x ^ (x >> 15)
  x = x * _M4
  x = x ^ (x >> 16)
  return (x >> 8).astype(jnp.float32) * np.float32(2.0 ** -24)


@dataclasses.dataclass(frozen=True)
class INHMFRecipe(Recipe):
  """INH-MF binary codes ranked by Hamming distance (see the module docstring)."""
  name: ClassVar[str] = "inhmf"
  trainable: ClassVar[bool] = False

  def fit(self, cfg: Config, data: SubgraphData) -> dict:
    """Codes for each window T of ``baseline.inhmf_windows``; the best on validation is kept.

    The paper of XploVAE does not say which T it used (INH-MF's authors used 1 or 10
    depending on the dataset), so T is a hyperparameter chosen like EASE's λ: on
    validation NDCG@20, never on the test split.
    """
    from xplo_jax.models.ease import select_on_validation
    windows = tuple(cfg.baseline.inhmf_windows)
    if not windows:
      raise ValueError("baseline.inhmf_windows must name at least one window T")
    adj = bipartite_adjacency(data.split.train.csr(data.n_users, data.n_items))
    cands = (self._fit_window(cfg, data, adj, t) for t in windows)
    if len(windows) == 1:
      return next(cands)
    best, values, params = select_on_validation(self.scorer(None, None, cfg.eval.item_chunk), cands,
                                                lambda users: self.eval_inputs({}, users), cfg, data, "INH-MF")
    log.info("INH-MF: window T=%d chosen on validation (%s)", windows[best],
             ", ".join(f"T={t}: {v:.4f}" for t, v in zip(windows, values)))
    return {**params, "window_valid": jnp.asarray(values, jnp.float32)}

  def _fit_window(self, cfg: Config, data: SubgraphData, adj, window: int) -> dict:
    bc = cfg.baseline
    m = proximity_matrix(adj, window)
    log.info("INH-MF: proximity M with T=%d over %d nodes, nnz=%d", window, m.shape[0], m.nnz)
    codes, _, objective = discrete_mf(m, bc.inhmf_bits, bc.inhmf_iterations, bc.inhmf_gamma, cfg.train.seed)
    if len(objective):
      log.info("INH-MF: r=%d, γ=%g, objective ‖M − BQᵀ‖² %.6g → %.6g over %d iterations", bc.inhmf_bits,
               bc.inhmf_gamma, objective[0], objective[-1], len(objective))
    return {"user_codes": jnp.asarray(codes[:data.n_users], jnp.float32),
            "item_codes": jnp.asarray(codes[data.n_users:], jnp.float32),
            "jitter_seed": jnp.uint32(cfg.train.seed), "window": jnp.int32(window),
            "objective": jnp.asarray(objective, jnp.float32)}

  def describe(self, params) -> dict:
    """{"window": the T used, "objective": ‖M − BQᵀ‖²_F per iteration (of that T)}."""
    out = {"window": int(params["window"]), "objective": [float(v) for v in np.asarray(params["objective"])]}
    if "window_valid" in params:
      out["window_valid"] = [float(v) for v in np.asarray(params["window_valid"])]
    return out

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"users": users.astype(np.int32)}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    def prepare(params, inputs):
      return jnp.take(params["user_codes"], inputs["users"], axis=0), inputs["users"]

    def score(params, state, items):
      codes, users = state
      inner = codes @ jnp.take(params["item_codes"], items, axis=0).T        # r − 2·Hamming
      return inner + pair_jitter(users, items, params["jitter_seed"])

    return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)


RECIPE = INHMFRecipe()
