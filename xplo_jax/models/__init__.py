"""Flax NNX models: XploVAE and (later) the baselines."""

from xplo_jax.models.xplovae import XploVAE

__all__ = ["XploVAE"]
