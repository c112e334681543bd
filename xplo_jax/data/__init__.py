"""Data: loaders, binarization + k-core filtering, the seeded split, synthetic data.

numpy/scipy only. The one entry point most code needs is ``load_split(cfg)``:

    raw = load_raw(cfg)                 # a loader, the synthetic generator or TFDS
    ds = filter_interactions(raw, cfg)  # binarize, dedupe, k-core, remap
    split = split_dataset(ds, ...)      # per user 80/20, 10% of train -> valid

``dataset='split-dir'`` skips filtering and splitting: the three TSVs are used as-is.
"""

from __future__ import annotations

import numpy as np

from xplo_jax.config import DataConfig
from xplo_jax.data.filtering import binarize, filter_interactions, kcore
from xplo_jax.data.split import split_dataset, split_pairs
from xplo_jax.data.types import Dataset, ItemCategories, Pairs, RawInteractions, Split
from xplo_jax.errors import DataError

__all__ = ["load_raw", "load_dataset", "load_split", "split_from_tables", "Dataset", "ItemCategories",
           "Pairs", "RawInteractions", "Split", "binarize", "filter_interactions", "kcore",
           "split_dataset", "split_pairs"]


def load_raw(cfg: DataConfig) -> RawInteractions:
  """Reads the raw interactions named by ``cfg`` (not for ``split-dir``)."""
  cfg.validate()
  if cfg.dataset == "synthetic":
    from xplo_jax.data import synthetic
    return synthetic.generate(cfg.synthetic_preset, scale=cfg.synthetic_scale, seed=cfg.synthetic_seed)
  if cfg.dataset == "split-dir":
    raise DataError("split-dir data is already split: use load_split", field="data.dataset")
  if cfg.source == "tfds":
    from xplo_jax.data import tfds_source
    return tfds_source.load_tfds(_tfds_name(cfg.dataset), cfg.data_dir)
  from xplo_jax.data import loaders
  return loaders.load_raw(cfg)


def _tfds_name(dataset: str) -> str:
  names = {"ml-100k": "movielens/100k-ratings", "ml-1m": "movielens/1m-ratings",
           "ml-latest": "movielens/latest-small-ratings"}
  if dataset not in names:
    raise DataError(f"the tfds source has MovieLens only ({', '.join(names)}), not {dataset!r}",
                    field="data.source")
  return names[dataset]


def dataset_name(cfg: DataConfig) -> str:
  if cfg.dataset == "synthetic":
    return f"synthetic-{cfg.synthetic_preset}" + ("" if cfg.synthetic_scale == 1 else f"@{cfg.synthetic_scale:g}")
  return cfg.dataset


def load_dataset(cfg: DataConfig) -> Dataset:
  """Loads, binarizes, deduplicates, k-core filters and remaps (DESIGN.md §1)."""
  return filter_interactions(load_raw(cfg), cfg, name=dataset_name(cfg))


def load_split(cfg: DataConfig) -> Split:
  """The train/valid/test split for ``cfg``: filtered and split, or a split-dir as-is."""
  cfg.validate()
  if cfg.dataset == "split-dir":
    from xplo_jax.data import loaders
    if cfg.data_dir is None:
      raise DataError("split-dir needs data.data_dir (--data-dir): the folder with train.tsv, "
                      "valid.tsv and test.tsv", field="data.data_dir")
    return split_from_tables(loaders.read_split_dir(cfg.data_dir), name="split-dir")
  ds = load_dataset(cfg)
  return split_dataset(ds, test_frac=cfg.test_frac, valid_frac=cfg.valid_frac, seed=cfg.split_seed)


def split_from_tables(tables: dict[str, RawInteractions], name: str = "split-dir") -> Split:
  """A ``Split`` from pre-split train/valid/test tables, used as-is (no filtering).

  Ids are remapped over the union of the three tables. Duplicate rows within a
  table are merged; a pair in two tables, or a valid/test user without any train
  interaction, is an error (the first would leak, the second cannot be encoded).
  """
  parts = [tables[k] for k in ("train", "valid", "test")]
  all_users = np.concatenate([np.asarray(p.user) for p in parts])
  all_items = np.concatenate([np.asarray(p.item) for p in parts])
  if all_users.dtype.kind != np.asarray(parts[0].user).dtype.kind or len({np.asarray(p.user).dtype.kind for p in parts}) > 1:
    all_users = all_users.astype(str)
  if len({np.asarray(p.item).dtype.kind for p in parts}) > 1:
    all_items = all_items.astype(str)
  user_ids, uinv = np.unique(all_users, return_inverse=True)
  item_ids, iinv = np.unique(all_items, return_inverse=True)
  nu, ni = len(user_ids), len(item_ids)
  out, seen, offset = {}, {}, 0
  for key, p in zip(("train", "valid", "test"), parts):
    n = len(p)
    u = uinv[offset:offset + n].astype(np.int64)
    i = iinv[offset:offset + n].astype(np.int64)
    offset += n
    code = np.unique(u * ni + i)
    for other, ocode in seen.items():
      both = np.intersect1d(code, ocode)
      if len(both):
        c = both[0]
        raise DataError(f"pair (user {user_ids[c // ni]}, item {item_ids[c % ni]}) and {len(both) - 1} more "
                        f"appear in both {other}.tsv and {key}.tsv: a split must not overlap", path=p.source)
    seen[key] = code
    out[key] = Pairs((code // ni).astype(np.int32), (code % ni).astype(np.int32))
  train_users = np.unique(out["train"].user)
  for key in ("valid", "test"):
    missing = np.setdiff1d(np.unique(out[key].user), train_users)
    if len(missing):
      raise DataError(f"user {user_ids[missing[0]]} (and {len(missing) - 1} more) has {key} items but no "
                      "train interactions: every evaluated user needs a train row", path=tables[key].source)
  return Split(name=name, train=out["train"], valid=out["valid"], test=out["test"], n_users=nu, n_items=ni,
               user_ids=user_ids, item_ids=item_ids, categories=None)
