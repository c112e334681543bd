"""The tiny synthetic configuration that the baseline tests share.

``SMALL`` is the override list; ``small_cfg(*extra)`` resolves it with extra overrides.
The ``tiny_data`` fixture (``conftest.py``) preprocesses it once per test session.
"""

from __future__ import annotations

from xplo_jax.config import Config, apply_overrides

SMALL = ["data.synthetic_preset=tiny", "preprocess.knn=20", "eval.user_batch=128"]
# A small XploVAE on it, for the tests of the training loop (3 epochs of 5 steps, evaluated each epoch).
SMALL_XPLOVAE = SMALL + ["model.latent_dim=16", "model.hidden_dim=32", "train.batch_size=64", "train.epochs=3",
                         "train.eval_every=1"]


def small_cfg(*extra) -> Config:
  return apply_overrides(Config(), SMALL + list(extra))


def small_xplovae_cfg(*extra) -> Config:
  return apply_overrides(Config(), SMALL_XPLOVAE + list(extra))
