"""The seeded per-user split (DESIGN.md §1).

The paper: "we randomly select 80% of historical user-item interactions to
constitute the training set, and treat the remaining as the test set. From the
training set, we randomly select 10% of interactions as the validation set."
Here the fractions are taken per user (every user is in train, valid and test in
proportion), with ``n_test = round_half_up(0.2 n)`` and
``n_valid = round_half_up(0.1 (n - n_test))``, clamped so each user keeps at least
one train item. The same seed gives a byte-identical split.
"""

from __future__ import annotations

import numpy as np

from xplo_jax.data.types import Dataset, Pairs, Split
from xplo_jax.errors import DataError

__all__ = ["split_dataset", "split_pairs"]


def _round_half_up(x: np.ndarray) -> np.ndarray:
  return np.floor(x + 0.5).astype(np.int64)


def split_pairs(pairs: Pairs, n_users: int, *, test_frac: float = 0.2, valid_frac: float = 0.1,
                seed: int = 0, user_ids: np.ndarray | None = None) -> tuple[Pairs, Pairs, Pairs]:
  """Splits sorted unique pairs per user into (train, valid, test).

  Raises:
    DataError: a user has a single interaction (it cannot be both trained on and
      evaluated; raise ``data.min_user_interactions``).
  """
  counts = np.bincount(pairs.user, minlength=n_users)
  single = np.flatnonzero(counts == 1)
  if len(single):
    who = user_ids[single[0]] if user_ids is not None else single[0]
    raise DataError(f"user {who} (and {len(single) - 1} more) has a single interaction after filtering; "
                    "the per-user split needs at least 2 per user (set data.min_user_interactions >= 2)",
                    field="user")
  rng = np.random.default_rng(seed)
  keys = rng.random(len(pairs))
  order = np.lexsort((keys, pairs.user))            # users ascending, random order within a user
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.arange(len(pairs)) - starts[pairs.user[order]]
  n = counts[pairs.user[order]]
  n_test = np.clip(_round_half_up(test_frac * n), 0, n - 1)
  n_valid = np.clip(_round_half_up(valid_frac * (n - n_test)), 0, n - n_test - 1)
  part = np.where(rank < n_test, 2, np.where(rank < n_test + n_valid, 1, 0))
  out = []
  for p in (0, 1, 2):
    idx = np.sort(order[part == p])                 # pairs are sorted, so this restores (user, item) order
    out.append(Pairs(pairs.user[idx].copy(), pairs.item[idx].copy()))
  return tuple(out)


def split_dataset(ds: Dataset, *, test_frac: float = 0.2, valid_frac: float = 0.1, seed: int = 0) -> Split:
  train, valid, test = split_pairs(ds.pairs, ds.n_users, test_frac=test_frac, valid_frac=valid_frac,
                                   seed=seed, user_ids=ds.user_ids)
  return Split(name=ds.name, train=train, valid=valid, test=test, n_users=ds.n_users, n_items=ds.n_items,
               user_ids=ds.user_ids, item_ids=ds.item_ids, categories=ds.categories)
