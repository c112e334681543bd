"""Mult-VAE (Liang, Krishnan, Hoffman & Jebara, WWW 2018) on the shared split and evaluator.

Source followed: ``dawenl/vae_cf``, ``VAE_ML20M_WWW2018.ipynb``, class ``MultiVAE``
(notes in ``shared/paper/baselines.md`` §2).

Model, for user u with binary train row x_u ∈ {0,1}^{|V|}:

    encoder:  h = tanh(dropout(x_u / ‖x_u‖₂) W₁ + b₁)                 W₁ ∈ R^{|V|×600}
              [μ ; log σ²] = h W₂ + b₂                                W₂ ∈ R^{600×400}
    decoder:  f(z) = tanh(z W₃ + b₃) W₄ + b₄                           W₄ ∈ R^{600×|V|}
              π(z) = softmax(f(z))                                      over ALL items

Objective (minimized; averaged over the batch's real users), one reparameterized
z = μ + ε σ, ε ~ N(0, I):

    L_u = −Σ_v x_uv log π_v(z) + β · ½ Σ_k (−log σ²_k + σ²_k + μ²_k − 1)
    β   = min(multvae_beta_cap, step / multvae_anneal_steps)            (step = gradient updates so far)

Defaults (``BaselineConfig``): hidden 600, latent 200, dropout 0.5 (the notebook's
``keep_prob_ph: 0.5``), β cap 0.2, 200 000 anneal steps; Adam at ``train.learning_rate``
with no weight decay (the notebook builds ``MultiVAE(p_dims, lam=0.0)``). Weights
Xavier-uniform (``tf.contrib.layers.xavier_initializer``), biases truncated normal
with std 0.001 (``tf.truncated_normal_initializer(stddev=0.001)``); the encoder's last
layer is ONE [600, 400] Xavier matrix split into μ and log σ², as in the notebook's
``_construct_weights`` (``d_out *= 2``), not two [600, 200] ones.

Readings of the source made here:

* Weak generalization: the project's split holds out items of every user, not whole
  users, so the model encodes the user's *training* row at evaluation time (the
  notebook folds in 80 % of held-out users' items instead). Ranking: decoder logits
  f(μ) with dropout off and z = μ (the notebook's ``is_training_ph = 0``); train
  (and, when testing, valid) items are masked by the shared evaluator.
* The input row is built from the user's padded train list (``a1_ids``, ``a1_len``):
  the first layer is an embedding bag Σ_j w_j W₁[id_j] with w_j = keep_j / (0.5 ·
  √|A₁|) (``layers.bag_dense`` or ``bag_gather``). Dropout on the normalized row
  acts on its non-zero entries only, because dropping a zero changes nothing; so
  one Bernoulli(keep = 1 − dropout) draw per list slot is the same distribution as
  ``tf.nn.dropout`` on the dense row (train ids are distinct).
* The multinomial term gathers log-softmax at the list ids: −Σ_j present_j ·
  log π_{id_j}, i.e. x_u is the unnormalized binary row (the notebook multiplies
  ``log_softmax`` by ``input_ph``, the raw 0/1 row).
* Steps are counted by the shared loop from 0, so the first update has β = 0, as in
  the notebook (``anneal`` is computed before ``update_count += 1``).
* Early stopping and the kept checkpoint follow the shared loop (validation
  NDCG@20), where the notebook keeps the best validation NDCG@100.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xplo_jax import losses
from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.models import layers
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe

__all__ = ["MultVAE", "MultVAEStatic", "MultVAERecipe", "RECIPE", "draw_noise"]


def _bias_init():
  # tf.truncated_normal_initializer(stddev=0.001): a normal with std 0.001 truncated at ±2 std.
  return jax.nn.initializers.truncated_normal(stddev=0.001)


class MultVAE(nnx.Module):
  """The Mult-VAE network: [|V| → H → 2P] encoder, [P → H → |V|] decoder, tanh hidden.

  Args:
    num_items: |V|.
    hidden_dim: H (600).
    latent_dim: P (200).
    dropout: drop rate on the normalized input row during training (0.5).
    encoder_kernel: 'auto', 'dense' or 'gather': how the first layer's product with the
      sparse input row is computed (``layers.bag_dense`` / ``bag_gather``; same values).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, num_items: int, *, hidden_dim: int = 600, latent_dim: int = 200, dropout: float = 0.5,
               encoder_kernel: str = "auto", rngs: nnx.Rngs):
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    if encoder_kernel not in ("auto", "dense", "gather"):
      raise ValueError(f"encoder_kernel must be auto, dense or gather, got {encoder_kernel!r}")
    V, H, P = num_items, hidden_dim, latent_dim
    self.num_items, self.hidden_dim, self.latent_dim = V, H, P
    self.dropout = float(dropout)
    self.encoder_kernel = encoder_kernel
    xavier = jax.nn.initializers.xavier_uniform()
    bias = _bias_init()
    self.enc_w = nnx.Param(xavier(rngs.params(), (V, H)))          # W₁, used as an embedding-bag table
    self.enc_b = nnx.Param(bias(rngs.params(), (H,)))
    self.enc_out = nnx.Linear(H, 2 * P, kernel_init=xavier, bias_init=bias, rngs=rngs)   # [μ ; log σ²]
    self.dec_hidden = nnx.Linear(P, H, kernel_init=xavier, bias_init=bias, rngs=rngs)
    self.dec_w = nnx.Param(xavier(rngs.params(), (H, V)))          # W₄, sliced per item chunk when scoring
    self.dec_b = nnx.Param(bias(rngs.params(), (V,)))

  def encode(self, ids: jax.Array, lens: jax.Array, keep: Optional[jax.Array] = None):
    """q(z | x_u) from the padded train list.

    Args:
      ids: [B, W] int32 item ids (entries at and beyond ``lens`` are padding).
      lens: [B] number of real ids per row.
      keep: [B, W] bool dropout mask of the list slots (training), or None (no dropout).

    Returns:
      (μ, log σ²), each [B, P].
    """
    lens_f = lens.astype(jnp.float32)
    present = (jnp.arange(ids.shape[1])[None, :] < lens[:, None]).astype(jnp.float32)
    w = present * jax.lax.rsqrt(jnp.maximum(lens_f, 1.0))[:, None]        # x / ‖x‖₂ at the row's ones
    if keep is not None and self.dropout > 0:
      w = jnp.where(keep, w / (1.0 - self.dropout), 0.0)                 # inverted dropout, as tf.nn.dropout
    kernel = self.encoder_kernel
    if kernel == "auto":     # one dense GEMM while |V| is within a small factor of the list width
      kernel = "dense" if self.num_items <= 16 * ids.shape[1] else "gather"
    bag = layers.bag_dense if kernel == "dense" else layers.bag_gather
    h = jnp.tanh(bag(self.enc_w[...], ids, w) + self.enc_b[...][None, :])
    out = self.enc_out(h)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]

  def decode_hidden(self, z: jax.Array) -> jax.Array:
    """tanh(z W₃ + b₃): [B, P] → [B, H]."""
    return jnp.tanh(self.dec_hidden(z))

  def logits_from(self, hidden: jax.Array, items: Optional[jax.Array] = None) -> jax.Array:
    """f(z) at ``items`` [C] ([B, C]) or at all items ([B, |V|]) from ``decode_hidden``."""
    if items is None:
      return hidden @ self.dec_w[...] + self.dec_b[...][None, :]
    return hidden @ jnp.take(self.dec_w[...], items, axis=1) + jnp.take(self.dec_b[...], items)[None, :]

  def terms(self, ids: jax.Array, lens: jax.Array, keep: Optional[jax.Array], eps: jax.Array):
    """The two per-user terms of the loss for given dropout mask and noise.

    Args:
      ids, lens: the padded train list ([B, W], [B]).
      keep: [B, W] bool dropout mask of the list slots (None: no dropout).
      eps: [B, P] standard normal noise of the reparameterization z = μ + ε σ.

    Returns:
      (nll [B] = −Σ_v x_uv log softmax(f(z))_v, kl [B] = KL(N(μ, σ²) ‖ N(0, I))).
    """
    mu, logvar = self.encode(ids, lens, keep)
    z = mu + eps * jnp.exp(0.5 * logvar)
    log_pi = jax.nn.log_softmax(self.logits_from(self.decode_hidden(z)), axis=-1)   # over ALL items
    present = (jnp.arange(ids.shape[1])[None, :] < lens[:, None]).astype(jnp.float32)
    nll = -jnp.sum(present * jnp.take_along_axis(log_pi, ids, axis=1), axis=1)
    return nll, losses.kl_standard_normal(mu, logvar)


def draw_noise(key: jax.Array, ids_shape: tuple[int, int], latent_dim: int, dropout: float):
  """(keep [B, W] bool or None, ε [B, P]) for one training step, from ``key``."""
  k_drop, k_z = jax.random.split(key)
  keep = jax.random.bernoulli(k_drop, 1.0 - dropout, ids_shape) if dropout > 0 else None
  return keep, jax.random.normal(k_z, (ids_shape[0], latent_dim), jnp.float32)


@dataclasses.dataclass(frozen=True)
class MultVAEStatic:
  learning_rate: float
  beta_cap: float
  anneal_steps: int


@dataclasses.dataclass(frozen=True)
class MultVAERecipe(Recipe):
  """Mult-VAE through the shared loop: batches of users, the β-ELBO above, rank by f(μ)."""
  name: ClassVar[str] = "multvae"

  def build(self, cfg: Config, data: SubgraphData, rngs: nnx.Rngs) -> MultVAE:
    b = cfg.baseline
    return MultVAE(data.n_items, hidden_dim=b.multvae_hidden, latent_dim=b.multvae_latent,
                   dropout=b.multvae_dropout, rngs=rngs)

  def static(self, cfg: Config) -> MultVAEStatic:
    b = cfg.baseline
    return MultVAEStatic(learning_rate=cfg.train.learning_rate, beta_cap=b.multvae_beta_cap,
                         anneal_steps=b.multvae_anneal_steps)

  def batch_fields(self) -> tuple[str, ...]:
    return ("a1_ids", "a1_len")

  def loss(self, model: MultVAE, batch: dict, step, key, st: MultVAEStatic):
    """Mean over the batch's real users of nll_u + β(step) kl_u, and diagnostics."""
    ids, lens = batch["a1_ids"], batch["a1_len"]
    keep, eps = draw_noise(key, ids.shape, model.latent_dim, model.dropout)
    nll, kl = model.terms(ids, lens, keep, eps)
    # β is computed from the traced step inside the jit (a Python counter would freeze at trace time).
    beta = losses.kl_weight(step, st.beta_cap, "linear", st.anneal_steps)
    valid = batch["valid"].astype(jnp.float32)
    n = jnp.maximum(valid.sum(), 1.0)
    loss = jnp.sum((nll + beta * kl) * valid) / n
    return loss, {"nll": jnp.sum(nll * valid) / n, "kl": jnp.sum(kl * valid) / n, "beta": beta}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {k: arrays[k][users] for k in ("a1_ids", "a1_len")}

  def scorer(self, graphdef, model: MultVAE, item_chunk: int) -> Scorer:
    def prepare(pr, inputs):
      m = nnx.merge(graphdef, *pr)
      mu, _ = m.encode(inputs["a1_ids"], inputs["a1_len"])    # no dropout, z = μ
      return m.decode_hidden(mu)                                # [B, H], reused by every item chunk

    def score(pr, hidden, items):
      return nnx.merge(graphdef, *pr).logits_from(hidden, items)

    return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)


RECIPE = MultVAERecipe()
