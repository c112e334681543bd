"""The in-memory tables every loader returns and every later stage consumes."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import scipy.sparse as sp

__all__ = ["ItemCategories", "RawInteractions", "Pairs", "Dataset", "Split"]


@dataclasses.dataclass(frozen=True)
class ItemCategories:
  """Item → category pairs (multi-label: an item may appear several times).

  Attributes:
    item: [n] item ids (original ids in a ``RawInteractions``, contiguous indices
      in a ``Dataset``).
    category: [n] int32 category codes, indices into ``names``.
    names: category names (MovieLens genres, Taobao category ids as strings).
  """
  item: np.ndarray
  category: np.ndarray
  names: tuple[str, ...]

  def __post_init__(self):
    if self.item.shape != self.category.shape:
      raise ValueError("ItemCategories: item and category must have the same shape")


@dataclasses.dataclass(frozen=True)
class RawInteractions:
  """Interactions as read from a file, before binarization and filtering.

  Attributes:
    user, item: [n] original ids (int64, or str where the file has non-numeric ids).
    value: [n] float32 rating, or 1.0 for implicit data.
    timestamp: [n] int64 seconds since the epoch (Netflix: the date's midnight
      UTC), -1 where the file has none.
    behavior: [n] uint8 codes into ``behavior_names`` (Taobao), else None.
    behavior_names: names of the behavior codes, e.g. ('pv', 'buy', 'cart', 'fav').
    implicit: True when every row is a positive (no rating to threshold).
    categories: item categories, where the dataset has them.
    source: where the rows came from (a path or a description), for messages.
  """
  user: np.ndarray
  item: np.ndarray
  value: np.ndarray
  timestamp: np.ndarray
  source: str
  implicit: bool = False
  behavior: Optional[np.ndarray] = None
  behavior_names: tuple[str, ...] = ()
  categories: Optional[ItemCategories] = None

  def __post_init__(self):
    n = len(self.user)
    for name in ("item", "value", "timestamp"):
      if len(getattr(self, name)) != n:
        raise ValueError(f"RawInteractions: {name} has {len(getattr(self, name))} rows, user has {n}")
    if self.behavior is not None and len(self.behavior) != n:
      raise ValueError("RawInteractions: behavior has a different length")

  def __len__(self) -> int:
    return len(self.user)


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Implicit (user, item) pairs over contiguous indices, sorted by (user, item).

  Attributes:
    user, item: [n] int32.
  """
  user: np.ndarray
  item: np.ndarray

  def __len__(self) -> int:
    return len(self.user)

  def csr(self, n_users: int, n_items: int, dtype=np.float32) -> sp.csr_matrix:
    """The [n_users, n_items] 0/1 matrix of these pairs."""
    data = np.ones(len(self.user), dtype=dtype)
    m = sp.csr_matrix((data, (self.user, self.item)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.sort_indices()
    return m

  def counts_per_user(self, n_users: int) -> np.ndarray:
    return np.bincount(self.user, minlength=n_users).astype(np.int64)

  def counts_per_item(self, n_items: int) -> np.ndarray:
    return np.bincount(self.item, minlength=n_items).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Binarized, k-core filtered interactions over contiguous ids.

  Attributes:
    name: dataset name (for messages and manifests).
    pairs: the positive (user, item) pairs, sorted, unique.
    n_users, n_items: sizes of the id spaces.
    user_ids, item_ids: [n_users] / [n_items] original ids, indexed by new id.
    categories: item categories over new item ids, or None.
  """
  name: str
  pairs: Pairs
  n_users: int
  n_items: int
  user_ids: np.ndarray
  item_ids: np.ndarray
  categories: Optional[ItemCategories] = None

  def stats(self) -> dict:
    n = len(self.pairs)
    return {"users": int(self.n_users), "items": int(self.n_items), "interactions": int(n),
            "density": float(n / max(1, self.n_users * self.n_items))}


@dataclasses.dataclass(frozen=True)
class Split:
  """A train / valid / test split of a ``Dataset`` (same id spaces).

  Everything downstream (subgraphs, item graph, strata) is computed from ``train``
  only; ``valid`` and ``test`` are held out for evaluation.
  """
  name: str
  train: Pairs
  valid: Pairs
  test: Pairs
  n_users: int
  n_items: int
  user_ids: np.ndarray
  item_ids: np.ndarray
  categories: Optional[ItemCategories] = None

  def stats(self) -> dict:
    total = len(self.train) + len(self.valid) + len(self.test)
    cells = max(1, self.n_users * self.n_items)
    out = {"users": int(self.n_users), "items": int(self.n_items), "interactions": int(total),
           "density": float(total / cells)}
    for name in ("train", "valid", "test"):
      p = getattr(self, name)
      out[name] = {"interactions": int(len(p)),
                   "users": int(len(np.unique(p.user))),
                   "items": int(len(np.unique(p.item))),
                   "density": float(len(p) / cells)}
    return out
