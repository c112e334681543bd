"""Tests of the synthetic default dataset (xplo_jax.data.synthetic)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from xplo_jax.data import synthetic
from xplo_jax.data.synthetic import PRESETS, SyntheticSpec, generate, resolve_spec
from xplo_jax.data.types import RawInteractions
from xplo_jax.errors import ConfigError


@pytest.fixture(scope="module")
def ml100k() -> RawInteractions:
  return generate("ml-100k", 1.0, 0)


@pytest.fixture(scope="module")
def sparse_small() -> RawInteractions:
  return generate("sparse-small", 1.0, 0)


def _k_core(user: np.ndarray, item: np.ndarray, k: int = 10) -> np.ndarray:
  """Mask of the rows kept by the iterative k-core filter."""
  keep = np.ones(len(user), dtype=bool)
  while True:
    cu = np.bincount(user[keep], minlength=user.max() + 1)
    ci = np.bincount(item[keep], minlength=item.max() + 1)
    new = keep & (cu[user] >= k) & (ci[item] >= k)
    if new.sum() == keep.sum():
      return keep
    keep = new


def _check_table(r: RawInteractions, spec: SyntheticSpec) -> None:
  n = spec.n_interactions
  assert len(r) == n
  assert r.user.dtype == np.int64 and r.item.dtype == np.int64
  assert r.user.min() >= 0 and r.user.max() < spec.n_users
  assert r.item.min() >= 0 and r.item.max() < spec.n_items
  assert r.implicit
  assert r.value.dtype == np.float32 and np.all(r.value == 1.0)
  assert r.timestamp.dtype == np.int64 and np.all(r.timestamp == -1)
  codes = r.user * spec.n_items + r.item
  assert np.all(np.diff(codes) > 0), "rows must be sorted by (user, item) with no duplicates"
  assert len(np.unique(codes)) == n
  cats = r.categories
  assert cats is not None
  np.testing.assert_array_equal(cats.item, np.arange(spec.n_items))
  assert cats.category.shape == (spec.n_items,)
  assert cats.names == tuple(f"c{c}" for c in range(spec.n_clusters))
  assert set(np.unique(cats.category)) == set(range(spec.n_clusters))


# --- presets ----------------------------------------------------------------

def test_preset_numbers():
  shapes = {"ml-100k": (943, 1_682, 100_000), "ml-10m": (69_838, 8_940, 10_000_000),
            "netflix": (65_533, 17_759, 25_000_000), "alibaba": (49_235, 234_647, 56_000_000)}
  for name, (u, i, n) in shapes.items():
    s = PRESETS[name]
    assert (s.n_users, s.n_items, s.n_interactions) == (u, i, n), name
  assert PRESETS["tiny"].n_users <= 500 and PRESETS["tiny"].n_items <= 500
  small = PRESETS["sparse-small"]
  assert 1_000 <= small.n_users <= 10_000 and 1_000 <= small.n_items <= 10_000
  for name, s in PRESETS.items():
    assert s.name == name
    s.validate()
    assert 0 < s.affinity <= 1
  # The Alibaba-shaped presets are sparse in the graph sense: no global noise and
  # bridges only between ring neighbours; the MovieLens/Netflix ones are dense.
  for name in ("alibaba", "sparse-small"):
    assert PRESETS[name].noise == 0 and PRESETS[name].bridge_span >= 1
  for name in ("tiny", "ml-100k", "ml-10m", "netflix"):
    assert PRESETS[name].noise > 0


def test_tiny_table_and_speed():
  t = time.perf_counter()
  r = generate("tiny")
  assert time.perf_counter() - t < 0.5
  spec = PRESETS["tiny"]
  _check_table(r, spec)
  assert r.source == "synthetic:tiny@1,seed=0"
  keep = _k_core(r.user, r.item)
  assert len(np.unique(r.user[keep])) >= 0.9 * spec.n_users
  assert len(np.unique(r.item[keep])) >= 0.9 * spec.n_items


def test_ml100k_table_degrees_and_kcore(ml100k):
  spec = PRESETS["ml-100k"]
  _check_table(ml100k, spec)
  assert ml100k.source == "synthetic:ml-100k@1,seed=0"
  deg = np.bincount(ml100k.user, minlength=spec.n_users)
  assert deg.min() >= spec.min_degree
  assert deg.max() >= 4 * np.median(deg)          # heavy-tailed
  assert deg.max() <= spec.max_degree_frac * spec.n_items
  pop = np.bincount(ml100k.item, minlength=spec.n_items)
  assert pop.max() >= 5 * np.median(pop)          # popularity skew
  keep = _k_core(ml100k.user, ml100k.item)
  # Roughly ML-100K-sized after the default 10-core filter.
  assert len(np.unique(ml100k.user[keep])) >= 0.98 * spec.n_users
  assert len(np.unique(ml100k.item[keep])) >= 0.9 * spec.n_items
  assert keep.sum() >= 0.97 * spec.n_interactions


def test_ml100k_generation_is_fast(ml100k):
  t = time.perf_counter()
  generate("ml-100k", 1.0, 3)
  assert time.perf_counter() - t < 1.0


def test_scale():
  r = generate("ml-100k", 0.5, 0)
  spec = resolve_spec("ml-100k", 0.5)
  assert (spec.n_users, spec.n_items, spec.n_interactions) == (472, 841, 50_000)
  assert spec.n_clusters == PRESETS["ml-100k"].n_clusters
  _check_table(r, spec)
  assert r.source == "synthetic:ml-100k@0.5,seed=0"
  big = resolve_spec("alibaba", 0.1)
  assert (big.n_users, big.n_items, big.n_interactions) == (4_924, 23_465, 5_600_000)


# --- determinism --------------------------------------------------------------

def test_deterministic_per_seed():
  a, b, c = generate("tiny", 1.0, 7), generate("tiny", 1.0, 7), generate("tiny", 1.0, 8)
  for field in ("user", "item", "value", "timestamp"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  np.testing.assert_array_equal(a.categories.category, b.categories.category)
  assert a.source == b.source == "synthetic:tiny@1,seed=7"
  assert c.source == "synthetic:tiny@1,seed=8"
  assert len(c) == len(a)
  assert not np.array_equal(a.item, c.item)
  assert not np.array_equal(a.categories.category, c.categories.category)
  # A spec object equal to the preset gives the same data as its name.
  d = generate(PRESETS["tiny"], 1.0, 7)
  np.testing.assert_array_equal(a.item, d.item)


# --- planted structure -------------------------------------------------------

def test_categories_are_the_planted_clusters(ml100k):
  """Users concentrate on one category; a random relabelling of items does not."""
  spec = PRESETS["ml-100k"]
  cat = ml100k.categories.category

  def top_share(category):
    counts = np.zeros((spec.n_users, spec.n_clusters))
    np.add.at(counts, (ml100k.user, category[ml100k.item]), 1)
    return float(np.mean(counts.max(1) / counts.sum(1)))

  planted = top_share(cat)
  shuffled = top_share(np.random.default_rng(0).permutation(cat))
  # Home-cluster draws are ~affinity of a user's items (less for heavy users).
  assert planted >= 0.7 * spec.affinity
  assert shuffled < 0.5 * planted


def _recall_at(scores: np.ndarray, train: np.ndarray, test: np.ndarray, k: int = 20) -> float:
  """Recall@k = hits / min(k, |test|), over users with held-out items."""
  scores = scores.astype(np.float64, copy=True)
  scores[train > 0] = -np.inf
  top = np.argpartition(-scores, k, axis=1)[:, :k]
  hits = np.take_along_axis(test, top, axis=1).sum(1)
  n = test.sum(1)
  m = n > 0
  return float(np.mean(hits[m] / np.minimum(k, n[m])))


def test_structure_beats_popularity(ml100k):
  """A random 20% per-user holdout: ItemKNN and cluster popularity beat popularity."""
  spec = PRESETS["ml-100k"]
  u, i = ml100k.user, ml100k.item
  rng = np.random.default_rng(123)
  # Per user, hold out round(20%) of its items, chosen at random.
  order = np.lexsort((rng.random(len(u)), u))
  start = np.searchsorted(u[order], np.arange(spec.n_users))
  deg = np.bincount(u, minlength=spec.n_users)
  rank = np.empty(len(u), dtype=np.int64)
  rank[order] = np.arange(len(u)) - start[u[order]]
  held = rank < np.round(0.2 * deg[u])
  train = np.zeros((spec.n_users, spec.n_items), dtype=np.float32)
  train[u[~held], i[~held]] = 1
  test = np.zeros_like(train)
  test[u[held], i[held]] = 1
  assert 0.19 < held.mean() < 0.21

  pop = train.sum(0)
  r_pop = _recall_at(np.broadcast_to(pop, train.shape), train, test)
  # ItemKNN: cosine similarity of item columns, scores = train @ sim.
  co = train.T @ train
  norm = np.sqrt(np.diag(co)) + 1e-9
  sim = co / norm[:, None] / norm[None, :]
  np.fill_diagonal(sim, 0)
  r_knn = _recall_at(train @ sim, train, test)
  # Cluster popularity: a user's majority category (from train) and the train
  # popularity of items among the users of that category.
  cat = ml100k.categories.category
  per_cat = np.zeros((spec.n_users, spec.n_clusters))
  np.add.at(per_cat, (u[~held], cat[i[~held]]), 1)
  group = per_cat.argmax(1)
  group_pop = np.zeros((spec.n_clusters, spec.n_items))
  np.add.at(group_pop, (group[u[~held]], i[~held]), 1)
  r_cluster = _recall_at(group_pop[group], train, test)
  print(f"\nml-100k Recall@20: popularity {r_pop:.3f}, ItemKNN {r_knn:.3f} "
        f"({r_knn / r_pop:.2f}x), cluster popularity {r_cluster:.3f} ({r_cluster / r_pop:.2f}x)")
  assert 0.05 < r_pop < 0.3
  assert r_knn >= 1.3 * r_pop
  assert r_cluster >= 1.3 * r_pop


# --- graph distances -----------------------------------------------------------

def _distances(r: RawInteractions, n_users: int, n_items: int, n_sources: int,
               seed: int = 0) -> np.ndarray:
  """[n_sources, n_items] BFS distances user -> item in the bipartite graph."""
  a = sp.csr_matrix((np.ones(len(r)), (r.user, n_users + r.item)),
                    shape=(n_users + n_items, n_users + n_items))
  a = (a + a.T).tocsr()
  src = np.random.default_rng(seed).choice(n_users, size=n_sources, replace=False)
  return shortest_path(a, directed=False, unweighted=True, indices=src)[:, n_users:]


def test_sparse_preset_has_far_pairs(sparse_small):
  spec = PRESETS["sparse-small"]
  _check_table(sparse_small, spec)
  q = _distances(sparse_small, spec.n_users, spec.n_items, 200).ravel()
  # Bipartite user -> item distances are odd (or infinite).
  finite = q[np.isfinite(q)]
  assert np.all(finite % 2 == 1)
  frac = {"1": np.mean(q == 1), "3": np.mean(q == 3), "5": np.mean(q == 5),
          ">=7": np.mean(q >= 7)}
  print("\nsparse-small distance fractions:", {k: round(float(v), 3) for k, v in frac.items()})
  # Labels 3 (Q = 5) and 4 (Q >= 7 or unreachable) are populated; with 12
  # clusters on a ring and bridges to neighbours, expect about 1/6 and 1/2.
  assert frac["5"] >= 0.08
  assert frac[">=7"] >= 0.25
  assert frac["3"] >= 0.15


def test_sparse_preset_far_pairs_survive_split(sparse_small):
  """The strata stay populated in an 80% train graph after 10-core filtering."""
  spec = PRESETS["sparse-small"]
  keep = _k_core(sparse_small.user, sparse_small.item)
  keep &= np.random.default_rng(1).random(len(keep)) >= 0.2
  sub = RawInteractions(user=sparse_small.user[keep], item=sparse_small.item[keep],
                        value=sparse_small.value[keep], timestamp=sparse_small.timestamp[keep],
                        source="split", implicit=True)
  q = _distances(sub, spec.n_users, spec.n_items, 100, seed=2)
  q = q[:, np.bincount(sub.item, minlength=spec.n_items) > 0].ravel()
  assert np.mean(q == 5) >= 0.08
  assert np.mean(q >= 7) >= 0.25


def test_dense_presets_are_within_distance_3(ml100k):
  spec = PRESETS["ml-100k"]
  q = _distances(ml100k, spec.n_users, spec.n_items, 100)
  q = q[:, np.bincount(ml100k.item, minlength=spec.n_items) > 0]
  assert q.max() == 3
  tiny = generate("tiny")
  q = _distances(tiny, PRESETS["tiny"].n_users, PRESETS["tiny"].n_items, 50)
  assert q.max() == 3


# --- custom specs and edge cases ------------------------------------------------

def test_near_complete_custom_spec():
  """Degrees close to the catalogue size force the uniform top-up path."""
  spec = SyntheticSpec(n_users=60, n_items=50, n_interactions=2_700, n_clusters=3,
                       popularity_exponent=2.0, popularity_offset=1.0, bridge=0.1, noise=0.1,
                       min_degree=40, degree_sigma=0.1, max_degree_frac=1.0, name="dense")
  r = generate(spec, 1.0, 0)
  _check_table(r, spec)
  assert r.source == "synthetic:dense@1,seed=0"
  # Every pair once: exactly the full matrix.
  full = SyntheticSpec(n_users=20, n_items=30, n_interactions=600, n_clusters=2,
                       min_degree=30, max_degree_frac=1.0)
  r = generate(full, 1.0, 5)
  _check_table(r, full)


def test_sparse_custom_spec_stays_in_reach():
  """Without noise a user's items lie in its home and secondary clusters only."""
  spec = dataclasses.replace(PRESETS["sparse-small"], n_users=400, n_items=600,
                             n_interactions=12_000, name="ring")
  r = generate(spec, 1.0, 0)
  _check_table(r, spec)
  cat = r.categories.category[r.item]
  for user in range(0, spec.n_users, 37):
    cs = np.unique(cat[r.user == user])
    assert len(cs) <= 2
    if len(cs) == 2:  # ring neighbours
      assert (cs[1] - cs[0]) % spec.n_clusters in (1, spec.n_clusters - 1)


# --- bad arguments ---------------------------------------------------------------

def test_unknown_preset_lists_presets():
  with pytest.raises(ConfigError, match="synthetic_preset") as e:
    generate("ml-1b")
  for name in PRESETS:
    assert name in str(e.value)
  with pytest.raises(ConfigError, match="synthetic_preset"):
    generate(42)


@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), float("inf"), "big"])
def test_bad_scale(scale):
  with pytest.raises(ConfigError, match="synthetic_scale"):
    generate("tiny", scale)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(seed):
  with pytest.raises(ConfigError, match="synthetic_seed"):
    generate("tiny", 1.0, seed)


def test_too_many_interactions():
  spec = SyntheticSpec(n_users=10, n_items=10, n_interactions=101, n_clusters=2)
  with pytest.raises(ConfigError, match=r"n_interactions.*10 users x 10 items.*100"):
    generate(spec)
  # A preset scaled down until its interactions no longer fit.
  with pytest.raises(ConfigError, match=r"synthetic_scale.*ml-100k.*0\.01.*distinct pairs"):
    generate("ml-100k", 0.01)
  # Fits in users x items, but not under the degree caps of the sparse ring.
  with pytest.raises(ConfigError, match=r"synthetic_scale.*alibaba.*max_degree_frac"):
    generate("alibaba", 0.05)


@pytest.mark.parametrize("change, field", [
    (dict(bridge=0.7, noise=0.5), "bridge"),
    (dict(noise=-0.1), "noise"),
    (dict(n_clusters=0), "n_clusters"),
    (dict(n_clusters=201), "n_clusters"),
    (dict(max_degree_frac=0.0), "max_degree_frac"),
    (dict(popularity_offset=0.0), "popularity_offset"),
    (dict(bridge_span=-1), "bridge_span"),
    (dict(n_users=2.5), "n_users"),
])
def test_bad_spec_fields(change, field):
  spec = dataclasses.replace(PRESETS["tiny"], **change)
  with pytest.raises(ConfigError, match=f"SyntheticSpec.{field}"):
    generate(spec)


def test_module_api():
  assert synthetic.preset_names() == tuple(PRESETS)
  assert {"tiny", "ml-100k", "ml-10m", "netflix", "alibaba", "sparse-small"} <= set(PRESETS)


def test_exact_fill_is_weighted_sampling():
  """The exact fill's support holds each user's draw distribution, and with one
  item to pick it picks item v with probability p_v (Efraimidis–Spirakis)."""
  for name in ("tiny", "sparse-small"):
    spec = dataclasses.replace(PRESETS[name], n_users=40, n_items=120, n_interactions=1_000,
                               n_clusters=4)
    rng = np.random.default_rng(0)
    sizes = np.array([20, 30, 40, 30])
    start = np.concatenate([[0], np.cumsum(sizes)])
    weight = rng.random(spec.n_items) + 0.1
    home = rng.integers(0, 4, spec.n_users)
    second = (home + 1) % 4
    pos_item = rng.permutation(spec.n_items)
    sampler = synthetic._Sampler(spec, start, weight, home, second, pos_item)
    users = np.arange(spec.n_users)
    owner, item, prob = sampler.support(users)
    np.testing.assert_allclose(np.bincount(owner, weights=prob), 1.0, rtol=1e-12)
    # Empirical draw frequencies of user 0 match its support probabilities.
    draws = sampler.draw(rng, np.zeros(200_000, dtype=np.int64))
    p = np.zeros(spec.n_items)
    p[item[owner == 0]] = prob[owner == 0]
    freq = np.bincount(draws, minlength=spec.n_items) / len(draws)
    assert np.abs(freq - p).max() < 0.004
    assert np.all(freq[p == 0] == 0)
    # Five picks: distinct items the user can reach.
    five = synthetic._exact_fill(sampler, rng, np.array([0]), np.array([5]),
                                 np.array([], dtype=np.int64), spec.n_items)
    assert len(np.unique(five)) == 5 and np.all(p[five] > 0)
    # One pick, repeated (the same user 10,000 times, item 5 held): frequencies ∝ p.
    reps = 10_000
    codes = synthetic._exact_fill(sampler, rng, np.zeros(reps, dtype=np.int64),
                                  np.ones(reps, dtype=np.int64), np.array([5], dtype=np.int64),
                                  spec.n_items)
    assert len(codes) == reps and np.all(codes != 5)
    q = p.copy()
    q[5] = 0
    q /= q.sum()
    freq = np.bincount(codes, minlength=spec.n_items) / reps
    assert np.abs(freq - q).max() < 0.008
