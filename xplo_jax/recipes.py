"""Recipes: how each model is built, trained (its loss and batches) and scored.

The shared training loop (``train.py``) and evaluator (``evaluate.py``) know a
model only through its recipe, so every model runs on the same split, batches,
optimizer, checkpoints and ranking protocol. A recipe is a frozen (hashable)
dataclass: it is a static argument of the one jitted train step.

The contract (see ``Recipe``):

* ``trainable = True``: ``build(cfg, data, rngs) -> nnx.Module``; ``static(cfg)``
  (hashable loss settings, with ``learning_rate``); ``optimizer(static)``;
  ``batch_fields()`` — which per-user host arrays a training batch carries, from
  ``a1_ids a1_len a2_ids a2_len labels strata users`` (plus ``valid``, always);
  ``loss(model, batch, step, key, static) -> (scalar, aux dict)``, pure and
  jittable, averaging over ``batch['valid']`` users; optionally
  ``init_params(cfg, data, graphdef, params, rest, workdir) -> params`` (e.g.
  pretraining).
* ``trainable = False``: ``fit(cfg, data) -> params`` (a pytree of arrays).
* both: ``eval_inputs(arrays, users) -> dict`` of per-user host arrays and
  ``scorer(graphdef, model, item_chunk) -> Scorer``; for trainable recipes the
  scorer's ``params`` argument is the pair ``(params, rest)`` of NNX states.

Models register by name in ``_MODULES``: a module that defines ``RECIPE``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from xplo_jax import losses
from xplo_jax.config import Config
from xplo_jax.evaluate import Scorer
from xplo_jax.models.xplovae import XploVAE
from xplo_jax.preprocess.shards import SubgraphData

__all__ = ["Recipe", "XploVAERecipe", "PopularityRecipe", "RECIPES", "get_recipe"]


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Base class. Subclasses set ``name`` and ``trainable``."""
  name: ClassVar[str] = ""
  trainable: ClassVar[bool] = True

  def static(self, cfg: Config) -> Any:
    """Hashable settings the loss needs (a static argument of the jitted step)."""
    return None

  def optimizer(self, static) -> optax.GradientTransformation:
    return optax.adam(static.learning_rate)

  def batch_fields(self) -> tuple[str, ...]:
    return ()

  def init_params(self, cfg: Config, data: SubgraphData, graphdef, params, rest, workdir):
    """Optional hook after initialization (before training): returns the params to start from."""
    return params


# ----------------------------------------------------------------------------- XploVAE

@dataclasses.dataclass(frozen=True)
class XploVAEStatic:
  learning_rate: float
  beta: float
  beta_schedule: str
  anneal_steps: int
  negatives: str
  plan: tuple
  orders: int


@dataclasses.dataclass(frozen=True)
class XploVAERecipe(Recipe):
  """XploVAE with the stratified ELBO (DESIGN.md §2)."""
  name: ClassVar[str] = "xplovae"

  def build(self, cfg: Config, data: SubgraphData, rngs: nnx.Rngs) -> XploVAE:
    m = cfg.model
    return XploVAE(data.n_items, data.knn_ids, data.knn_count, orders=m.orders, latent_dim=m.latent_dim,
                   embed_dim=m.embed_dim, hidden_dim=m.hidden_dim, proximity_layers=m.proximity_layers,
                   conv_layers=m.conv_layers, input_dropout=m.input_dropout, conv_kernel=m.conv_kernel,
                   dense_budget_mb=m.dense_conv_budget_mb, rngs=rngs)

  def static(self, cfg: Config) -> XploVAEStatic:
    t = cfg.train
    plan = () if t.negatives == "full" else losses.stratum_plan(
        cfg.model.orders, t.negatives, tuple(t.samples_per_stratum), t.uniform_samples)
    return XploVAEStatic(learning_rate=t.learning_rate, beta=t.beta, beta_schedule=t.beta_schedule,
                         anneal_steps=t.beta_anneal_steps, negatives=t.negatives, plan=plan,
                         orders=cfg.model.orders)

  def batch_fields(self) -> tuple[str, ...]:
    return ("a1_ids", "a1_len", "a2_ids", "a2_len", "labels")

  def loss(self, model: XploVAE, batch: dict, step, key, st: XploVAEStatic):
    """Mean over the batch's real users of −ℓ̂_u + β KL_u, and diagnostics."""
    k_drop, k_z, k_neg = jax.random.split(key, 3)
    mu, logvar = model.encode(batch, key=k_drop, train=True)
    z = model.sample_z(mu, logvar, k_z)
    if st.negatives == "full":
      ll = losses.full_loglik(model.logits(z), batch["labels"])
    else:
      neg_ids, neg_w, neg_row = losses.sample_zeros(k_neg, batch["labels"], st.plan)
      a1, a2 = batch["a1_ids"], batch["a2_ids"]
      w1 = a1.shape[1]
      w2 = a2.shape[1] if st.orders == 2 else 0
      parts = [a1] + ([a2] if st.orders == 2 else []) + [neg_ids]
      eta = model.logits(z, jnp.concatenate(parts, axis=1))              # [B, K, W1 + W2 + S]
      present = lambda ids, n: (jnp.arange(ids.shape[1])[None, :] < n[:, None]).astype(jnp.float32)
      eta_neg = eta[:, 0, w1 + w2:]
      if st.orders == 2:
        eta_neg = jnp.where(neg_row[None, :] == 0, eta_neg, eta[:, 1, w1 + w2:])
        ll = losses.sampled_loglik(eta[:, 0, :w1], present(a1, batch["a1_len"]), eta_neg, neg_w,
                                   eta[:, 1, w1:w1 + w2], present(a2, batch["a2_len"]))
      else:
        ll = losses.sampled_loglik(eta[:, 0, :w1], present(a1, batch["a1_len"]), eta_neg, neg_w)
    kl = losses.kl_standard_normal(mu, logvar)
    beta = losses.kl_weight(step, st.beta, st.beta_schedule, st.anneal_steps)
    valid = batch["valid"].astype(jnp.float32)
    n = jnp.maximum(valid.sum(), 1.0)
    loss = jnp.sum((beta * kl - ll) * valid) / n
    return loss, {"ll": jnp.sum(ll * valid) / n, "kl": jnp.sum(kl * valid) / n, "beta": beta}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {k: arrays[k][users] for k in ("a1_ids", "a1_len", "a2_ids", "a2_len")}

  def scorer(self, graphdef, model: XploVAE, item_chunk: int) -> Scorer:
    chunk = model.num_items if model.conv_kernel == "dense" else item_chunk

    def prepare(pr, inputs):
      m = nnx.merge(graphdef, *pr)
      mu, _ = m.encode(inputs)                 # rank with z = μ
      return m.proximity(mu), m.item_hidden(mu)

    def score(pr, state, items):
      m = nnx.merge(graphdef, *pr)
      return m.logits_from(state[0], state[1], items)[:, 0, :]   # first-order logit η₁

    return Scorer(prepare=prepare, score=score, item_chunk=chunk)


# ----------------------------------------------------------------------------- popularity

@dataclasses.dataclass(frozen=True)
class PopularityRecipe(Recipe):
  """Most popular train items first (ties: smaller id); the anchor every model must beat."""
  name: ClassVar[str] = "popularity"
  trainable: ClassVar[bool] = False

  def fit(self, cfg: Config, data: SubgraphData):
    degree = np.bincount(data.split.train.item, minlength=data.n_items).astype(np.float32)
    return {"degree": jnp.asarray(degree)}

  def eval_inputs(self, arrays: dict, users: np.ndarray) -> dict:
    return {"users": users.astype(np.int32)}

  def scorer(self, graphdef, model, item_chunk: int) -> Scorer:
    def prepare(params, inputs):
      return inputs["users"].shape[0]

    def score(params, b, items):
      return jnp.broadcast_to(params["degree"][items][None, :], (b, items.shape[0]))

    return Scorer(prepare=prepare, score=score, item_chunk=item_chunk)


RECIPES: dict[str, Recipe] = {r.name: r for r in (XploVAERecipe(), PopularityRecipe())}

# Baselines, imported on first use: model name -> module defining RECIPE (or RECIPES, a dict).
_MODULES = {
    "ncf": "xplo_jax.models.ncf", "gmf": "xplo_jax.models.ncf", "mlp": "xplo_jax.models.ncf",
    "neumf": "xplo_jax.models.ncf", "neumf-pre": "xplo_jax.models.ncf",
    "multvae": "xplo_jax.models.multvae",
    "ngcf": "xplo_jax.models.ngcf", "lightgcn": "xplo_jax.models.lightgcn",
    "ease": "xplo_jax.models.ease", "itemknn": "xplo_jax.models.itemknn",
    "inhmf": "xplo_jax.models.inhmf", "tjp": "xplo_jax.models.tjp",
}


def known_models() -> list[str]:
  return sorted(set(RECIPES) | set(_MODULES))


def get_recipe(name: str) -> Recipe:
  """The recipe registered under ``name`` (baseline modules are imported on demand)."""
  if name not in RECIPES and name in _MODULES:
    import importlib
    try:
      mod = importlib.import_module(_MODULES[name])
    except ModuleNotFoundError as e:
      if e.name != _MODULES[name]:
        raise
      mod = None
    if mod is not None:
      found = getattr(mod, "RECIPES", None) or {getattr(mod, "RECIPE").name: getattr(mod, "RECIPE")}
      RECIPES.update(found)
  if name not in RECIPES:
    from xplo_jax.errors import ConfigError
    raise ConfigError(f"model.name: unknown or unavailable model {name!r} (known: {', '.join(known_models())})")
  return RECIPES[name]
