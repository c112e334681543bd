"""xplo_jax: XploVAE, the exploration-exploitation motivated VAE recommender, in JAX.

The data and preprocessing layers (``xplo_jax.data``, ``xplo_jax.preprocess``) use
numpy/scipy only; the model layers import JAX lazily, so data tools start fast.
"""

__version__ = "0.1.0"

__all__ = ["XploVAE", "__version__"]


def __getattr__(name):  # PEP 562: import the JAX model only when asked for.
  if name == "XploVAE":
    from xplo_jax.models.xplovae import XploVAE
    return XploVAE
  raise AttributeError(f"module 'xplo_jax' has no attribute {name!r}")
