"""Binarization, deduplication, k-core, remapping and the seeded split."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xplo_jax.config import DataConfig
from xplo_jax.data import filter_interactions, kcore, split_dataset, split_from_tables
from xplo_jax.data.types import Dataset, ItemCategories, Pairs, RawInteractions
from xplo_jax.errors import DataError


def raw(users, items, values=None, implicit=False, source="mem.csv", **kw) -> RawInteractions:
  n = len(users)
  return RawInteractions(user=np.asarray(users), item=np.asarray(items),
                         value=np.asarray(values if values is not None else np.ones(n), np.float32),
                         timestamp=np.full(n, -1, np.int64), source=source, implicit=implicit, **kw)


def naive_kcore(pairs: set, ku: int, ki: int) -> set:
  pairs = set(pairs)
  while True:
    du, di = {}, {}
    for u, i in pairs:
      du[u] = du.get(u, 0) + 1
      di[i] = di.get(i, 0) + 1
    keep = {(u, i) for u, i in pairs if du[u] >= ku and di[i] >= ki}
    if keep == pairs:
      return keep
    pairs = keep


@pytest.mark.parametrize("seed", range(4))
def test_kcore_equals_naive_fixpoint(seed):
  rng = np.random.default_rng(seed)
  u = rng.integers(0, 80, 900)
  i = (rng.zipf(1.6, 900) % 60)
  key = np.unique(u * 1000 + i)
  u, i = key // 1000, key % 1000
  mask = kcore(u, i, 4, 3)
  got = set(zip(u[mask].tolist(), i[mask].tolist()))
  assert got == naive_kcore(set(zip(u.tolist(), i.tolist())), 4, 3)
  assert len(got) > 0


def test_binarize_threshold_dedupe_keeps_max_and_warns(caplog):
  r = raw(["a", "a", "a", "b", "b", "c"], [1, 1, 2, 1, 2, 2], [3, 4, 5, 2, 5, 4])
  cfg = DataConfig(min_user_interactions=1, min_item_interactions=1)
  with caplog.at_level(logging.WARNING):
    ds = filter_interactions(r, cfg)
  assert any("mem.csv" in m and "1 duplicate" in m and "maximum rating" in m for m in caplog.messages)
  # (a,1) has ratings 3 and 4 -> max 4 -> positive; (b,1)=2 negative.
  got = {(ds.user_ids[u], int(ds.item_ids[i])) for u, i in zip(ds.pairs.user, ds.pairs.item)}
  assert got == {("a", 1), ("a", 2), ("b", 2), ("c", 2)}
  assert ds.user_ids.tolist() == ["a", "b", "c"] and ds.item_ids.tolist() == [1, 2]


def test_behavior_filter_keeps_pv_and_buy():
  r = raw([1, 1, 1, 2], [10, 11, 12, 10], implicit=True, behavior=np.array([0, 1, 2, 3], np.uint8),
          behavior_names=("pv", "cart", "fav", "buy"))
  ds = filter_interactions(r, DataConfig(min_user_interactions=1, min_item_interactions=1))
  got = {(int(ds.user_ids[u]), int(ds.item_ids[i])) for u, i in zip(ds.pairs.user, ds.pairs.item)}
  assert got == {(1, 10), (2, 10)}
  with pytest.raises(DataError, match="behaviors"):
    filter_interactions(r, DataConfig(behaviors=("click",)))


def test_empty_after_filtering_is_a_clear_error():
  r = raw([1, 2, 3], [1, 2, 3], [5, 5, 5])
  with pytest.raises(DataError, match=r"mem\.csv: the dataset is empty after filtering: 3 rows read, 3 unique "
                                      r"positive pairs \(rating >= 4\), 0 left"):
    filter_interactions(r, DataConfig())


def test_categories_follow_the_remap():
  r = raw([1, 1, 2, 2], [7, 9, 7, 9], [5, 5, 5, 5],
          categories=ItemCategories(np.array([9, 7, 7, 8]), np.array([0, 1, 2, 0], np.int32), ("x", "y", "z")))
  ds = filter_interactions(r, DataConfig(min_user_interactions=1, min_item_interactions=1))
  # new ids: 7 -> 0, 9 -> 1; item 8 was filtered out.
  pairs = set(zip(ds.categories.item.tolist(), ds.categories.category.tolist()))
  assert pairs == {(1, 0), (0, 1), (0, 2)}


def make_dataset(seed=0, nu=200, ni=150) -> Dataset:
  rng = np.random.default_rng(seed)
  m = rng.random((nu, ni)) < 0.1
  m[:, 0] = m[:, 1] = True
  u, i = np.nonzero(m)
  return Dataset("t", Pairs(u.astype(np.int32), i.astype(np.int32)), nu, ni, np.arange(nu), np.arange(ni))


def test_split_fractions_disjoint_and_complete():
  ds = make_dataset()
  s = split_dataset(ds, seed=3)
  key = lambda p: set(zip(p.user.tolist(), p.item.tolist()))
  tr, va, te = key(s.train), key(s.valid), key(s.test)
  assert not (tr & va) and not (tr & te) and not (va & te)
  assert tr | va | te == key(ds.pairs)
  n = np.bincount(ds.pairs.user, minlength=ds.n_users)
  n_te = np.bincount(s.test.user, minlength=ds.n_users)
  n_va = np.bincount(s.valid.user, minlength=ds.n_users)
  n_tr = np.bincount(s.train.user, minlength=ds.n_users)
  np.testing.assert_array_equal(n_te, np.floor(0.2 * n + 0.5))
  np.testing.assert_array_equal(n_va, np.floor(0.1 * (n - n_te) + 0.5))
  assert (n_tr >= 1).all()
  for p in (s.train, s.valid, s.test):      # sorted by (user, item)
    order = np.lexsort((p.item, p.user))
    np.testing.assert_array_equal(order, np.arange(len(p)))


def test_split_is_byte_identical_for_a_seed_and_differs_across_seeds():
  ds = make_dataset(1)
  a, b, c = split_dataset(ds, seed=7), split_dataset(ds, seed=7), split_dataset(ds, seed=8)
  for name in ("train", "valid", "test"):
    pa, pb = getattr(a, name), getattr(b, name)
    assert pa.user.tobytes() == pb.user.tobytes() and pa.item.tobytes() == pb.item.tobytes()
  assert a.test.item.tobytes() != c.test.item.tobytes()


def test_two_interaction_user_keeps_a_train_item_and_single_is_an_error():
  ds = Dataset("t", Pairs(np.array([0, 0, 1, 1, 1], np.int32), np.array([0, 1, 0, 1, 2], np.int32)),
               2, 3, np.array(["u0", "u1"]), np.arange(3))
  s = split_dataset(ds, test_frac=0.5, valid_frac=0.9)
  assert (np.bincount(s.train.user, minlength=2) >= 1).all()
  single = Dataset("t", Pairs(np.array([0, 0, 1], np.int32), np.array([0, 1, 0], np.int32)),
                   2, 2, np.array(["u0", "u1"]), np.arange(2))
  with pytest.raises(DataError, match="user u1 .* single interaction"):
    split_dataset(single)


def test_split_dir_tables_used_as_is_and_checked():
  t = lambda u, i, name: raw(u, i, implicit=True, source=f"{name}.tsv")
  s = split_from_tables({"train": t([1, 1, 2], [5, 6, 5], "train"), "valid": t([1], [7], "valid"),
                         "test": t([2], [6], "test")})
  assert (s.n_users, s.n_items, len(s.train), len(s.valid), len(s.test)) == (2, 3, 3, 1, 1)
  with pytest.raises(DataError, match="both train.tsv and test.tsv"):
    split_from_tables({"train": t([1, 2], [5, 6], "train"), "valid": t([1], [7], "valid"),
                       "test": t([2], [6], "test")})
  with pytest.raises(DataError, match="user 3 .* no train interactions"):
    split_from_tables({"train": t([1, 2], [5, 6], "train"), "valid": t([1], [7], "valid"),
                       "test": t([3], [6], "test")})


def test_ml100k_statistics_after_filtering(ml100k_dir):
  """Real MovieLens 100K: ratings >= 4, 10-core, per-user 80/20 then 10% of train to valid."""
  from xplo_jax.data import load_split
  s = load_split(DataConfig(dataset="ml-100k", data_dir=str(ml100k_dir), download=False)).stats()
  assert (s["users"], s["items"], s["interactions"]) == (887, 822, 52764)
  assert (s["train"]["interactions"], s["valid"]["interactions"], s["test"]["interactions"]) == (37959, 4245, 10560)
  assert s["train"]["users"] == 887


def test_taobao_sample_through_filtering(taobao_csv):
  from xplo_jax.data import load_dataset
  cfg = DataConfig(dataset="alibaba", data_dir=str(taobao_csv.parent))
  with pytest.raises(DataError, match=r"empty after filtering: 4321 rows read, 3141 unique positive pairs "
                                      r"\(behaviors pv/buy\)"):
    load_dataset(cfg)
  ds = load_dataset(DataConfig(dataset="alibaba", data_dir=str(taobao_csv.parent), min_user_interactions=2,
                               min_item_interactions=2))
  assert (ds.n_users, ds.n_items, len(ds.pairs)) == (17, 44, 89)
  assert ds.categories is not None and len(ds.categories.item) == 44     # one Taobao category per item
