"""The tiny synthetic configuration that the baseline tests share.

``SMALL`` is the override list; ``small_cfg(*extra)`` resolves it with extra overrides.
The ``tiny_data`` fixture (``conftest.py``) preprocesses it once per test session.
"""

from __future__ import annotations

from xplo_jax.config import Config, apply_overrides

SMALL = ["data.synthetic_preset=tiny", "preprocess.knn=20", "eval.user_batch=128"]


def small_cfg(*extra) -> Config:
  return apply_overrides(Config(), SMALL + list(extra))
