"""Kernels of XploVAE: the kNN graph convolution and the encoder's embedding bag.

kNN graph convolution (DESIGN.md §2, §4). For one embedding dimension d,

    S⁽ᵐ⁾[b, v] = Σ_{j=0..Kₙ} ω[v, j] · S⁽ᵐ⁻¹⁾[b, nbr(v, j)]          (before bias and activation)

with nbr(v, 0) = v, ω > 0 on real neighbours and 0 on padded slots. It is the
product of S⁽ᵐ⁻¹⁾ with a sparse |V|×|V| matrix Ω (Ω[v, nbr(v, j)] = ω[v, j]).
Two kernels, one contract (same values, same gradients):

* ``conv_dense``: scatter ω into a dense Ω per d, one batched GEMM. Many more FLOPs,
  but BLAS/tensor-core friendly: on CPU ~25× faster than gathers for |V| in the
  thousands (NOTES-JAX.md). Memory D·|V|² per layer: chosen while it fits a budget.
* ``conv_gather``: accumulates over the Kₙ + 1 neighbour slots with ``lax.scan``,
  gathering one [B, N, D] slice per slot, the body rematerialized, so nothing of
  size [B, N, Kₙ+1, D] (let alone [B, |V|, Kₙ+1, D]) ever exists; memory
  O(B·N·D). It evaluates the layer only at the N requested items.

Embedding bag (the encoder's first layer): Σ_j w[b, j] · T[ids[b, j]] over a
user's padded item list, either as a chunked gather-sum (``bag_gather``, memory
O(B·chunk·H), work O(B·W·H)) or as a multi-hot [B, |V|] matrix times T
(``bag_dense``, work O(B·|V|·H) as one GEMM, faster on CPU while |V| is within a
small factor of the list width W).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["neighbour_table", "dense_conv_matrix", "conv_dense", "conv_gather", "conv_reference",
           "bag_gather", "bag_dense", "gather_items"]


def neighbour_table(knn_ids: np.ndarray, knn_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Adds slot 0 = the item itself to the kNN lists.

  Args:
    knn_ids: [|V|, Kₙ] int neighbour ids (padded slots hold anything valid).
    knn_count: [|V|] number of real neighbours of each item.

  Returns:
    nbr: [|V|, Kₙ + 1] int32, nbr[v, 0] = v.
    mask: [|V|, Kₙ + 1] float32, 1 on slot 0 and on the real neighbours.
  """
  knn_ids = np.asarray(knn_ids, np.int32)
  n, k = knn_ids.shape
  nbr = np.concatenate([np.arange(n, dtype=np.int32)[:, None], knn_ids], axis=1)
  slots = np.arange(k + 1)[None, :]
  mask = (slots <= np.asarray(knn_count)[:, None]).astype(np.float32)
  nbr = np.where(mask > 0, nbr, np.arange(n, dtype=np.int32)[:, None])   # padded slots point at self
  return nbr, mask


def dense_conv_matrix(omega: jax.Array, nbr: jax.Array) -> jax.Array:
  """Ω as a dense [D, |V|, |V|] array: Ω[d, v, nbr[v, j]] += ω[v, j, d]."""
  n, j, d = omega.shape
  rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, j))
  mat = jnp.zeros((d, n, n), omega.dtype)
  return mat.at[:, rows, nbr].add(jnp.moveaxis(omega, -1, 0))


def gather_items(s: jax.Array, items: jax.Array) -> jax.Array:
  """S at items: s [B, V, D]; items [N] (shared) or [B, N] (per user) → [B, N, D]."""
  if items.ndim == 1:
    return jnp.take(s, items, axis=1)
  return jnp.take_along_axis(s, items[..., None], axis=1)


def conv_dense(s: jax.Array, omega: jax.Array, nbr: jax.Array, items: jax.Array | None = None) -> jax.Array:
  """The conv as GEMMs with the dense Ω; then (optionally) gathered at ``items``.

  Args:
    s: [B, V, D] previous layer.
    omega: [V, Kₙ+1, D] non-negative weights (zero on padded slots).
    nbr: [V, Kₙ+1] neighbour ids.
    items: None (all items), [N] or [B, N] item ids.

  Returns:
    [B, V, D] or [B, N, D].
  """
  out = jnp.einsum("bwd,dvw->bvd", s, dense_conv_matrix(omega, nbr))
  return out if items is None else gather_items(out, items)


def conv_gather(s: jax.Array, omega: jax.Array, nbr: jax.Array, items: jax.Array | None = None) -> jax.Array:
  """The conv at ``items`` by accumulating over neighbour slots (see module docstring).

  Same arguments and result as ``conv_dense``. Each scan step reads one slot j of
  the neighbour table and of ω at the requested items, so the largest temporary
  is [B, N, D] (plus the [|V|, Kₙ+1, D] weight gradient in the backward pass).
  """
  b, v, d = s.shape
  if items is None:
    items = jnp.arange(v)
  shared = items.ndim == 1
  s_t = jnp.moveaxis(s, 1, 0) if shared else s      # shared items: a slot is a row gather of [V, B, D]

  @jax.checkpoint
  def body(acc, j):
    nb_j = jnp.take(jax.lax.dynamic_index_in_dim(nbr, j, axis=1, keepdims=False), items, axis=0)
    om_j = jnp.take(jax.lax.dynamic_index_in_dim(omega, j, axis=1, keepdims=False), items, axis=0)
    if shared:                                      # nb_j [N], om_j [N, D]
      return acc + jnp.take(s_t, nb_j, axis=0) * om_j[:, None, :], None
    g = jnp.take_along_axis(s, nb_j[..., None], axis=1)   # nb_j [B, N], om_j [B, N, D]
    return acc + g * om_j, None

  n = items.shape[0] if shared else items.shape[1]
  acc0 = jnp.zeros((n, b, d) if shared else (b, n, d), s.dtype)
  out, _ = jax.lax.scan(body, acc0, jnp.arange(nbr.shape[1]))
  return jnp.moveaxis(out, 0, 1) if shared else out


def conv_reference(s: jax.Array, omega: jax.Array, nbr: jax.Array) -> jax.Array:
  """Test oracle: the explicit weight matrix built in numpy-like dense form."""
  n = omega.shape[0]
  w = jnp.zeros((omega.shape[-1], n, n), omega.dtype)
  for j in range(omega.shape[1]):
    w = w.at[:, jnp.arange(n), nbr[:, j]].add(omega[:, j, :].T)
  return jnp.einsum("dvw,bwd->bvd", w, s)


def bag_gather(table: jax.Array, ids: jax.Array, weights: jax.Array, chunk: int = 64) -> jax.Array:
  """Σ_j weights[b, j] · table[ids[b, j]] as a chunked, rematerialized gather-sum.

  Args:
    table: [V, H]; ids: [B, W] int; weights: [B, W] (0 on padding). W is padded
      to a multiple of ``chunk`` here if needed.

  Returns:
    [B, H].
  """
  b, w = ids.shape
  pad = (-w) % chunk
  if pad:
    ids = jnp.pad(ids, ((0, 0), (0, pad)))
    weights = jnp.pad(weights, ((0, 0), (0, pad)))
  n = ids.shape[1] // chunk
  ids_c = ids.reshape(b, n, chunk).transpose(1, 0, 2)
  w_c = weights.reshape(b, n, chunk).transpose(1, 0, 2).astype(table.dtype)

  @jax.checkpoint
  def body(acc, x):
    i, ww = x
    return acc + jnp.einsum("bc,bch->bh", ww, jnp.take(table, i, axis=0)), None

  out, _ = jax.lax.scan(body, jnp.zeros((b, table.shape[1]), table.dtype), (ids_c, w_c))
  return out


def bag_dense(table: jax.Array, ids: jax.Array, weights: jax.Array) -> jax.Array:
  """Same as ``bag_gather`` through a multi-hot [B, V] matrix and one GEMM."""
  b = ids.shape[0]
  x = jnp.zeros((b, table.shape[0]), table.dtype).at[jnp.arange(b)[:, None], ids].add(
      weights.astype(table.dtype))
  return x @ table
