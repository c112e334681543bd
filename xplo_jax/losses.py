"""Pure, jittable objectives of XploVAE (DESIGN.md §2).

Per user, minimized and averaged over the batch:

    L̂_u = −ℓ̂_u + β · KL(q(z|A⁽ᵘ⁾) ‖ N(0, I))
    ℓ̂_u = Σ_k [ Σ_{v: A_kv=1} log σ(η_kv) + Σ_t (N_{u,k,t} / n_{k,t}) Σ_{s=1..n_{k,t}} log(1 − σ(η_{k,v_s})) ]

with log σ(η) = −softplus(−η) and log(1 − σ(η)) = −softplus(η). v_s is drawn
uniformly with replacement from the zeros of row k in stratum t (Q-class: Q = 1,
3, 5, ≥ 7; see ``xplo_jax.preprocess.labels``); an empty stratum contributes 0.
Sampling works on the uint8 label rows inside the jitted step: per stratum a mask,
its cumulative sum, and ``searchsorted`` of uniform ranks — exact and O(B·|V|).

``negatives``: 'stratified' (above), 'uniform' (one stratum: all zeros of the row)
or 'full' (the exact likelihood over all items).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xplo_jax.preprocess.labels import NUM_STRATA, POSITIVE_LABEL, Q_CLASS

__all__ = ["log_sigmoid", "log_one_minus_sigmoid", "kl_standard_normal", "stratum_plan", "sample_zeros",
           "sampled_loglik", "full_loglik", "kl_weight"]


def log_sigmoid(x: jax.Array) -> jax.Array:
  return -jax.nn.softplus(-x)


def log_one_minus_sigmoid(x: jax.Array) -> jax.Array:
  return -jax.nn.softplus(x)


def kl_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(μ, diag e^{logvar}) ‖ N(0, I)) per row: [B, P] → [B]."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mu ** 2 - 1.0 - logvar, axis=-1)


def kl_weight(step: jax.Array, beta: float, schedule: str, anneal_steps: int) -> jax.Array:
  """β at ``step``: constant, or linear ``min(beta, step / anneal_steps)`` (Mult-VAE's anneal)."""
  if schedule == "constant":
    return jnp.asarray(beta, jnp.float32)
  if schedule == "linear":
    return jnp.minimum(jnp.float32(beta), step.astype(jnp.float32) / float(max(1, anneal_steps)))
  raise ValueError(f"beta schedule must be constant or linear, got {schedule!r}")


def stratum_plan(orders: int, negatives: str, samples_per_stratum: tuple[int, ...],
                 uniform_samples: int) -> tuple[tuple[int, int, int], ...]:
  """Static list of (row k, Q-class t or −1 for 'all zeros', n samples) to draw.

  Row 1's positives are exactly its Q = 1 items, so its Q = 1 stratum is always
  empty and is not sampled.
  """
  if negatives == "uniform":
    return tuple((k, -1, int(uniform_samples)) for k in range(orders))
  if negatives != "stratified":
    raise ValueError(f"negatives must be stratified, uniform or full for sampling, got {negatives!r}")
  n = tuple(samples_per_stratum)
  if len(n) == 1:
    n = n * NUM_STRATA
  if len(n) != NUM_STRATA:
    raise ValueError(f"samples_per_stratum needs 1 or {NUM_STRATA} values (Q = 1, 3, 5, >= 7), got {n}")
  plan = []
  for k in range(orders):
    for t in range(NUM_STRATA):
      if (k == 0 and t == 0) or n[t] == 0:
        continue
      plan.append((k, t, int(n[t])))
  return tuple(plan)


def _draw(key, mask: jax.Array, n: int):
  """n uniform draws with replacement from the True positions of each row of ``mask``.

  Returns (ids [B, n] int32, counts [B] int32). Rows without a True position give
  id 0 and count 0 (their weight N/n is 0).
  """
  cs = jnp.cumsum(mask.astype(jnp.int32), axis=1)
  count = cs[:, -1]
  u = jax.random.uniform(key, (mask.shape[0], n))
  rank = jnp.minimum(jnp.floor(u * count[:, None]).astype(jnp.int32), jnp.maximum(count[:, None] - 1, 0))
  # The (rank+1)-th True position is the first index whose cumulative count reaches rank+1.
  ids = jax.vmap(lambda c, r: jnp.searchsorted(c, r, side="left", method="scan_unrolled"))(cs, rank + 1)
  ids = jnp.minimum(ids, mask.shape[1] - 1).astype(jnp.int32)
  return jnp.where(count[:, None] > 0, ids, 0), count


def sample_zeros(key: jax.Array, labels: jax.Array, plan) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Draws the negatives of every (row, stratum) of ``plan`` from the label rows.

  Args:
    key: PRNG key.
    labels: [B, |V|] uint8 labels 0..4.
    plan: from ``stratum_plan``.

  Returns:
    ids: [B, S] int32 item ids, S = Σ n over the plan, grouped by plan entry.
    weights: [B, S] float32, N_{u,k,t} / n_{k,t} for each draw (0 for an empty stratum).
    row: [S] int32 the row k each column belongs to (static pattern).
  """
  qclass = jnp.asarray(Q_CLASS)[labels]
  ids, weights, rows = [], [], []
  for idx, (k, t, n) in enumerate(plan):
    zeros = labels != POSITIVE_LABEL[k]
    mask = zeros if t < 0 else zeros & (qclass == t)
    i, count = _draw(jax.random.fold_in(key, idx), mask, n)
    ids.append(i)
    weights.append(jnp.broadcast_to((count.astype(jnp.float32) / n)[:, None], i.shape))
    rows.append(np.full(n, k, np.int32))
  return jnp.concatenate(ids, 1), jnp.concatenate(weights, 1), jnp.asarray(np.concatenate(rows))


def sampled_loglik(eta_pos1: jax.Array, mask_pos1: jax.Array, eta_neg: jax.Array, neg_weights: jax.Array,
                   eta_pos2: jax.Array | None = None, mask_pos2: jax.Array | None = None) -> jax.Array:
  """ℓ̂_u from logits at the positives and at the sampled zeros.

  Args:
    eta_pos1: [B, W1] η₁ at the A₁ ids; mask_pos1 [B, W1] (1 on real entries).
    eta_neg: [B, S] η of each draw's own row; neg_weights [B, S] (N/n, 0 when empty).
    eta_pos2, mask_pos2: [B, W2] η₂ at the A₂ ids (orders = 2), else None.

  Returns:
    [B] the estimate of log p(A⁽ᵘ⁾ | z).
  """
  ll = jnp.sum(mask_pos1 * log_sigmoid(eta_pos1), axis=1)
  if eta_pos2 is not None:
    ll = ll + jnp.sum(mask_pos2 * log_sigmoid(eta_pos2), axis=1)
  return ll + jnp.sum(neg_weights * log_one_minus_sigmoid(eta_neg), axis=1)


def full_loglik(eta: jax.Array, labels: jax.Array) -> jax.Array:
  """The exact log p(A⁽ᵘ⁾ | z): eta [B, K, |V|], labels [B, |V|] → [B]."""
  k = eta.shape[1]
  target = jnp.stack([labels == POSITIVE_LABEL[r] for r in range(k)], axis=1)
  return jnp.sum(jnp.where(target, log_sigmoid(eta), log_one_minus_sigmoid(eta)), axis=(1, 2))
