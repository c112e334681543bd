"""Binarization, deduplication, iterative k-core filtering and id remapping.

DESIGN.md §1: ratings >= 4 are positives (MovieLens, Netflix); for Taobao the
behaviors ``pv`` (click) and ``buy`` are kept; users and items with fewer than 10
interactions are removed, iterated until stable; ids are remapped to 0..n-1 with
the original ids kept for output.
"""

from __future__ import annotations

import logging

import numpy as np

from xplo_jax.config import DataConfig
from xplo_jax.data.types import Dataset, ItemCategories, Pairs, RawInteractions
from xplo_jax.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["binarize", "kcore", "filter_interactions"]


def _sorted_unique(x: np.ndarray) -> np.ndarray:
  """np.unique by sorting (numpy 2's hash-based unique is several times slower on 10M ints)."""
  s = np.sort(x, kind="stable")
  if len(s) == 0:
    return s
  keep = np.empty(len(s), bool)
  keep[0] = True
  np.not_equal(s[1:], s[:-1], out=keep[1:])
  return s[keep]


def _codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(unique ids, int64 codes) with codes[i] = index of ids[i] in the sorted uniques."""
  uniq, inv = np.unique(ids, return_inverse=True)
  return uniq, inv.astype(np.int64).ravel()


def binarize(raw: RawInteractions, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Keeps the positive rows and merges duplicate (user, item) rows.

  Duplicates among explicit ratings are merged keeping the maximum rating (a pair
  is positive iff its best rating passes the threshold), with a warning naming the
  source; repeated implicit events (Taobao clicks) are merged silently.

  Returns:
    (user_uniq, item_uniq, user_code, item_code): unique positive pairs as codes into
    the sorted original-id arrays ``user_uniq`` / ``item_uniq``.
  """
  n = len(raw)
  if n == 0:
    raise DataError("no interactions were read (expected at least one row)", path=raw.source)
  user_uniq, ucode = _codes(raw.user)
  item_uniq, icode = _codes(raw.item)
  key = ucode * len(item_uniq) + icode
  # Duplicates are counted on all rows, before the positive filter, as the file has them.
  n_dups = n - len(_sorted_unique(key))
  if n_dups and not raw.implicit:
    log.warning("%s: %d duplicate (user, item) rows; kept the maximum rating of each pair",
                raw.source, n_dups)
  elif n_dups:
    log.info("%s: %d repeated (user, item) events merged (one pair each)", raw.source, n_dups)

  if raw.behavior is not None:
    names = list(raw.behavior_names)
    unknown = [b for b in cfg.behaviors if b not in names]
    if unknown:
      raise DataError(f"behaviors {unknown} are not in the data (it has {names})", field="data.behaviors",
                      path=raw.source)
    keep_codes = np.array([names.index(b) for b in cfg.behaviors], dtype=raw.behavior.dtype)
    positive = np.isin(raw.behavior, keep_codes)
  elif raw.implicit:
    positive = np.ones(n, dtype=bool)
  else:
    # max rating >= threshold  <=>  any rating >= threshold: no need to reduce first.
    positive = raw.value >= cfg.rating_threshold
  pkey = _sorted_unique(key[positive])
  return user_uniq, item_uniq, pkey // len(item_uniq), pkey % len(item_uniq)


def kcore(user: np.ndarray, item: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
  """Iterative k-core: a boolean mask of the pairs that survive.

  Repeats "drop users with < min_user pairs, drop items with < min_item pairs"
  until no pair is dropped, so every surviving user and item meets its bound.
  """
  keep = np.ones(len(user), dtype=bool)
  nu = int(user.max()) + 1 if len(user) else 0
  ni = int(item.max()) + 1 if len(item) else 0
  while True:
    du = np.bincount(user[keep], minlength=nu)
    di = np.bincount(item[keep], minlength=ni)
    new = keep & (du[user] >= min_user) & (di[item] >= min_item)
    if new.sum() == keep.sum():
      return new
    keep = new


def filter_interactions(raw: RawInteractions, cfg: DataConfig, name: str | None = None) -> Dataset:
  """Binarize, deduplicate, k-core filter and remap ``raw`` (DESIGN.md §1).

  Raises:
    DataError: nothing is left after filtering (the message gives the counts at each
      stage and the thresholds to relax).
  """
  user_uniq, item_uniq, ucode, icode = binarize(raw, cfg)
  n_pos = len(ucode)
  keep = kcore(ucode, icode, cfg.min_user_interactions, cfg.min_item_interactions)
  ucode, icode = ucode[keep], icode[keep]
  if len(ucode) == 0:
    rule = ("behaviors " + "/".join(cfg.behaviors) if raw.behavior is not None
            else "all rows" if raw.implicit else f"rating >= {cfg.rating_threshold:g}")
    raise DataError(
        f"the dataset is empty after filtering: {len(raw)} rows read, {n_pos} unique positive pairs "
        f"({rule}), 0 left after the iterative {cfg.min_user_interactions}/{cfg.min_item_interactions}-core "
        f"(users/items); lower data.min_user_interactions / data.min_item_interactions",
        path=raw.source)
  users_kept, uidx = np.unique(ucode, return_inverse=True)
  items_kept, iidx = np.unique(icode, return_inverse=True)
  order = np.lexsort((iidx, uidx))
  pairs = Pairs(uidx[order].astype(np.int32), iidx[order].astype(np.int32))
  categories = None
  if raw.categories is not None:
    categories = _remap_categories(raw.categories, item_uniq[items_kept])
  ds = Dataset(name=name or raw.source, pairs=pairs, n_users=len(users_kept), n_items=len(items_kept),
               user_ids=user_uniq[users_kept], item_ids=item_uniq[items_kept], categories=categories)
  log.info("%s: %d rows -> %d positives -> %s after %d-core", raw.source, len(raw), n_pos,
           ds.stats(), cfg.min_user_interactions)
  return ds


def _remap_categories(cats: ItemCategories, item_ids: np.ndarray) -> ItemCategories:
  """Category pairs over new item indices (items without a category get none)."""
  cat_items = np.asarray(cats.item)
  if cat_items.dtype.kind != item_ids.dtype.kind:
    # ids parsed as ints in one file and strings in another: compare as strings.
    cat_items, item_ids = cat_items.astype(str), item_ids.astype(str)
  pos = np.searchsorted(item_ids, cat_items)
  pos = np.clip(pos, 0, max(0, len(item_ids) - 1))
  ok = (len(item_ids) > 0) & (item_ids[pos] == cat_items) if len(item_ids) else np.zeros(len(cat_items), bool)
  pairs = np.unique(np.stack([pos[ok], np.asarray(cats.category)[ok]], 1).astype(np.int64), axis=0)
  return ItemCategories(item=pairs[:, 0].astype(np.int32), category=pairs[:, 1].astype(np.int32),
                        names=tuple(cats.names))
