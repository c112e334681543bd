"""XploVAE: the exploration-exploitation motivated VAE (Zhang & Liu; DESIGN.md §2).

Generative model, for user u with latent z ∈ R^P, orders k = 1..K and items v:

    η_kv(z) = γ_kv + Σ_d G_kd(z) · S_vd(z),        A_kv ~ Bernoulli(σ(η_kv))

* γ ∈ R^{K×|V|}: population baseline shared by all users.
* G(z) ∈ R^{K×D} (proximity embeddings): per d an R-layer net, K×P then K×K weights,
  tanh hidden, identity last.
* S(z) ∈ R^{|V|×D} (user-specific item embeddings): S⁽¹⁾_d = h(W^{(d,1)} z + b₁) with
  W^{(d,1)} ∈ R^{|V|×P}, then M − 1 kNN graph convolutions with positive weights
  (softplus), tanh hidden, identity last (``layers.py``).

Inference model q(z | A⁽ᵘ⁾) = N(μ, diag σ²): each input row L2-normalized, dropout,
a tanh layer of ``hidden_dim`` units whose first product is a gather-sum over the
user's padded A₁ / A₂ id lists, then μ and log σ².

The one scoring interface, ``logits(z, items)``, serves training (positives and
sampled negatives, per user) and evaluation (shared item chunks): all layers but
the last of S run over all items, the last only at the requested ones.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xplo_jax.models import layers

__all__ = ["XploVAE", "Graph", "choose_conv_kernel"]


class Graph(nnx.Variable):
  """Non-trainable graph arrays (kNN neighbour ids and slot masks)."""


def default_dense_budget_mb() -> float:
  """The auto memory bound of the dense conv kernel: 1/4 of an accelerator's memory, 4 GiB on CPU.

  Measured on a 2-core CPU at |V| = 8,940, B = 512 (``benchmarks/train_bench.py``): the
  dense kernel's step takes 5.7 s (1.4 GB of temporaries, 79% of the matmul peak),
  the gather kernel's 16.6 s (0.5 GB, memory-bound) — dense wins while it fits.
  """
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # noqa: BLE001 — backends without memory statistics
    stats = {}
  limit = stats.get("bytes_limit")
  return limit / 4 / 2 ** 20 if limit else 4096.0


def choose_conv_kernel(kernel: str, num_items: int, embed_dim: int, conv_layers: int, budget_mb: float) -> str:
  """'dense' while the D·|V|² Ω matrices (and their gradients) fit ``budget_mb``; else 'gather'.

  ``budget_mb <= 0`` means ``default_dense_budget_mb()``.
  """
  if kernel in ("dense", "gather"):
    return kernel
  if kernel != "auto":
    raise ValueError(f"conv_kernel must be auto, dense or gather, got {kernel!r}")
  budget = budget_mb if budget_mb > 0 else default_dense_budget_mb()
  need = 2 * max(1, conv_layers - 1) * embed_dim * num_items ** 2 * 4
  return "dense" if need <= budget * 2 ** 20 else "gather"


def _softplus_inv(x: np.ndarray) -> np.ndarray:
  return np.log(np.expm1(x))


class XploVAE(nnx.Module):
  """The XploVAE model.

  Args:
    num_items: |V|.
    knn_ids: [|V|, Kₙ] item kNN ids (from the preprocessing graph).
    knn_count: [|V|] number of real neighbours per item.
    orders: K, rows of the user subgraph used (1 = first order only, 2 = default).
    latent_dim: P.
    embed_dim: D.
    hidden_dim: encoder width.
    proximity_layers: R (>= 1).
    conv_layers: M (>= 1; 1 = no graph convolution).
    input_dropout: dropout rate on the normalized input rows.
    conv_kernel: 'auto', 'dense' or 'gather' (see ``layers.py``).
    encoder_kernel: 'auto', 'dense' or 'gather' (embedding bag of the first layer).
    dense_budget_mb: memory bound of the dense conv kernel under 'auto' (0: 1/4 of an
      accelerator's memory, 4 GiB on CPU).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, num_items: int, knn_ids: np.ndarray, knn_count: np.ndarray, *, orders: int = 2,
               latent_dim: int = 200, embed_dim: int = 3, hidden_dim: int = 600, proximity_layers: int = 2,
               conv_layers: int = 2, input_dropout: float = 0.1, conv_kernel: str = "auto",
               encoder_kernel: str = "auto", dense_budget_mb: float = 0.0, rngs: nnx.Rngs):
    if orders not in (1, 2):
      raise ValueError(f"orders must be 1 or 2 (the shards hold first- and second-order rows), got {orders}")
    if proximity_layers < 1 or conv_layers < 1:
      raise ValueError("proximity_layers and conv_layers must be >= 1")
    if not 0.0 <= input_dropout < 1.0:
      raise ValueError(f"input_dropout must lie in [0, 1), got {input_dropout}")
    if encoder_kernel not in ("auto", "dense", "gather"):
      raise ValueError(f"encoder_kernel must be auto, dense or gather, got {encoder_kernel!r}")
    knn_ids = np.asarray(knn_ids)
    if knn_ids.ndim != 2 or knn_ids.shape[0] != num_items:
      raise ValueError(f"knn_ids must be [num_items={num_items}, K_n], got {knn_ids.shape}")
    V, P, D, K, H = num_items, latent_dim, embed_dim, orders, hidden_dim
    self.num_items, self.orders, self.latent_dim, self.embed_dim = V, K, P, D
    self.hidden_dim, self.proximity_layers, self.conv_layers = H, proximity_layers, conv_layers
    self.input_dropout = float(input_dropout)
    self.conv_kernel = choose_conv_kernel(conv_kernel, V, D, conv_layers, dense_budget_mb)
    self.encoder_kernel = encoder_kernel

    nbr, mask = layers.neighbour_table(knn_ids, knn_count)
    self.nbr = Graph(jnp.asarray(nbr))
    self.nbr_mask = Graph(jnp.asarray(mask))

    xavier = jax.nn.initializers.xavier_uniform()
    zeros = jax.nn.initializers.zeros
    # Inference network. The first layer is one |K·V| × H dense layer (Xavier over that shape).
    self.enc_w = nnx.Param(xavier(rngs.params(), (K * V, H)).reshape(K, V, H))
    self.enc_b = nnx.Param(jnp.zeros((H,)))
    self.mu = nnx.Linear(H, P, kernel_init=xavier, bias_init=zeros, rngs=rngs)
    self.logvar = nnx.Linear(H, P, kernel_init=xavier, bias_init=zeros, rngs=rngs)
    # Proximity net G: per d, P -> K, then (R - 1) times K -> K.
    per_d = jax.nn.initializers.xavier_uniform(in_axis=-2, out_axis=-1, batch_axis=(0,))
    self.g_w = nnx.List([nnx.Param(per_d(rngs.params(), (D, P if r == 0 else K, K)))
                         for r in range(proximity_layers)])
    self.g_b = nnx.List([nnx.Param(jnp.zeros((D, K))) for _ in range(proximity_layers)])
    # Item net S: per d, P -> V, then M - 1 kNN convolutions.
    w1 = per_d(rngs.params(), (D, P, V))
    self.s_w = nnx.Param(jnp.moveaxis(w1, 0, -1))                   # [P, V, D]
    self.s_b = nnx.List([nnx.Param(jnp.zeros((V, D))) for _ in range(conv_layers)])
    # ω > 0 through softplus, initialized to the mean over the item and its real neighbours.
    raw = np.broadcast_to(_softplus_inv(mask / np.maximum(mask.sum(1, keepdims=True), 1.0) + 1e-12)[..., None],
                          (*mask.shape, D)).astype(np.float32)
    self.omega_raw = nnx.List([nnx.Param(jnp.asarray(raw)) for _ in range(conv_layers - 1)])
    self.gamma = nnx.Param(jnp.zeros((K, V)))

  # ------------------------------------------------------------------ inference
  def encode(self, batch: dict, *, key: Optional[jax.Array] = None, train: bool = False):
    """q(z | A⁽ᵘ⁾).

    Args:
      batch: dict with a1_ids [B, W1] int32, a1_len [B], and (orders = 2) a2_ids
        [B, W2], a2_len [B].
      key: PRNG key for input dropout (needed when ``train`` and dropout > 0).
      train: apply input dropout.

    Returns:
      (μ, log σ²), each [B, P].
    """
    rows = [(batch["a1_ids"], batch["a1_len"]), (batch.get("a2_ids"), batch.get("a2_len"))][: self.orders]
    width = sum(ids.shape[1] for ids, _ in rows)
    kernel = self.encoder_kernel
    if kernel == "auto":    # dense multi-hot GEMM unless |V| is far above the list widths
      kernel = "dense" if self.orders * self.num_items <= 16 * width else "gather"
    bag = layers.bag_dense if kernel == "dense" else layers.bag_gather
    h = jnp.broadcast_to(self.enc_b[...][None, :], (rows[0][0].shape[0], self.hidden_dim))
    for k, (ids, lens) in enumerate(rows):
      lens = lens.astype(jnp.float32)
      present = (jnp.arange(ids.shape[1])[None, :] < lens[:, None]).astype(jnp.float32)
      w = present * jax.lax.rsqrt(jnp.maximum(lens, 1.0))[:, None]     # L2-normalized binary row
      if train and self.input_dropout > 0:
        if key is None:
          raise ValueError("encode(train=True) needs a PRNG key for input dropout")
        keep = jax.random.bernoulli(jax.random.fold_in(key, k), 1.0 - self.input_dropout, w.shape)
        w = jnp.where(keep, w / (1.0 - self.input_dropout), 0.0)
      h = h + bag(self.enc_w[k], ids, w)
    h = jnp.tanh(h)
    return self.mu(h), self.logvar(h)

  # ------------------------------------------------------------------ generative
  def proximity(self, z: jax.Array) -> jax.Array:
    """G(z): [B, K, D] proximity embeddings."""
    g = jnp.einsum("bp,dpk->bdk", z, self.g_w[0][...]) + self.g_b[0][...][None]
    for r in range(1, self.proximity_layers):
      g = jnp.einsum("bdj,djk->bdk", jnp.tanh(g), self.g_w[r][...]) + self.g_b[r][...][None]
    return jnp.swapaxes(g, 1, 2)

  def _omega(self, m: int) -> jax.Array:
    return jax.nn.softplus(self.omega_raw[m][...]) * self.nbr_mask[...][..., None]

  def _conv(self, s, m, items):
    fn = layers.conv_dense if self.conv_kernel == "dense" else layers.conv_gather
    out = fn(s, self._omega(m), self.nbr[...], items)
    bias = self.s_b[m + 1][...]
    bias = bias if items is None else jnp.take(bias, items, axis=0)     # [V|N, D] or [B, N, D]
    return out + (bias[None] if bias.ndim == 2 else bias)

  def item_hidden(self, z: jax.Array) -> jax.Array:
    """Every layer of S but the last, over all items: [B, |V|, D].

    With M = 1 this is the (pre-activation) linear layer itself, which is also the last.
    """
    s = jnp.einsum("bp,pvd->bvd", z, self.s_w[...]) + self.s_b[0][...][None]
    if self.conv_layers == 1:
      return s
    s = jnp.tanh(s)                                      # S⁽¹⁾ is a hidden layer when M >= 2
    for m in range(self.conv_layers - 2):                # hidden conv layers: over all items
      s = jnp.tanh(self._conv(s, m, None))
    return s

  def item_last(self, s: jax.Array, items: Optional[jax.Array] = None) -> jax.Array:
    """The last layer of S (identity activation) at ``items`` from ``item_hidden``'s output."""
    if self.conv_layers == 1:
      return s if items is None else layers.gather_items(s, items)
    return self._conv(s, self.conv_layers - 2, items)

  def item_embeddings(self, z: jax.Array, items: Optional[jax.Array] = None) -> jax.Array:
    """S(z) at all items ([B, |V|, D]) or at ``items`` ([N] or [B, N] → [B, N, D])."""
    return self.item_last(self.item_hidden(z), items)

  def logits_from(self, g: jax.Array, s_hidden: jax.Array, items: Optional[jax.Array] = None) -> jax.Array:
    """η from G(z) and ``item_hidden(z)`` (lets evaluation reuse them across item chunks)."""
    s = self.item_last(s_hidden, items)
    gamma = self.gamma[...]
    if items is None:
      base = gamma[None]
    elif items.ndim == 1:
      base = jnp.take(gamma, items, axis=1)[None]
    else:
      base = jnp.moveaxis(jnp.take(gamma, items, axis=1), 0, 1)
    return base + jnp.einsum("bkd,bnd->bkn", g, s)

  def logits(self, z: jax.Array, items: Optional[jax.Array] = None) -> jax.Array:
    """η at items: [B, K, N] (``items`` [N] or [B, N]) or [B, K, |V|] (``items`` None)."""
    return self.logits_from(self.proximity(z), self.item_hidden(z), items)

  def sample_z(self, mu: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    return mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)

  def __call__(self, batch: dict, items: Optional[jax.Array] = None, *, key: Optional[jax.Array] = None,
               train: bool = False):
    """Encode, sample (train) or take z = μ, and score ``items``.

    Returns:
      (logits [B, K, N or |V|], μ, log σ²).
    """
    if train and key is None:
      raise ValueError("XploVAE(train=True) needs a PRNG key")
    k_drop, k_z = jax.random.split(key) if key is not None else (None, None)
    mu, logvar = self.encode(batch, key=k_drop, train=train)
    z = self.sample_z(mu, logvar, k_z) if train else mu
    return self.logits(z, items), mu, logvar

  def num_params(self) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(self, nnx.Param)))
