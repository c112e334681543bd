"""Preprocessing (numpy/scipy only): user subgraphs, strata and the item graph, as shards.

    data = preprocess(split, PreprocessConfig(), "cache/ml-100k")   # or resume it
    batch = data.batch(np.arange(512))                            # static-shape host arrays
"""

from xplo_jax.preprocess.pipeline import code_version, prepare_cached, preprocess, preprocess_fingerprint
from xplo_jax.preprocess.shards import SubgraphData, open_shards

__all__ = ["preprocess", "prepare_cached", "preprocess_fingerprint", "open_shards", "SubgraphData", "code_version"]
