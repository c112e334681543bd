"""The embedded default dataset: implicit interactions with planted structure.

``generate(preset, scale, seed)`` returns a ``RawInteractions`` of implicit
(user, item) pairs, shaped like the paper's datasets (``PRESETS``), with a planted
cluster structure that a collaborative-filtering model can find and global
popularity cannot, so that "a good model beats popularity" is checkable without
any download.

Generative process (all of it seeded by ``seed``):

1. **Item clusters.** The ``n_clusters`` clusters get sizes proportional to
   lognormal(0, ``cluster_size_sigma``) weights (each at least one item); a random
   permutation of the item ids fills them, so ids carry no structure. Inside its
   cluster an item has a random popularity rank ``r`` (0 = head) and the weight
   ``(r + popularity_offset) ** -popularity_exponent`` (Zipf–Mandelbrot).
   The clusters sit on a ring ``0, 1, ..., n_clusters - 1``.
2. **User tastes.** Each user has a home cluster, drawn with probability
   proportional to the cluster sizes, and a secondary cluster: any other cluster
   uniformly when ``bridge_span == 0``, else a ring neighbour at offset
   ``±1 .. ±bridge_span``.
3. **User degrees.** ``d_u = min_degree + excess_u`` with the excesses
   proportional to lognormal(0, ``degree_sigma``) weights, scaled so that the
   degrees sum to exactly ``n_interactions``, and capped at ``max_degree_frac`` of
   the items the user can reach (the cap's surplus is water-filled onto the other
   users; integer rounding by largest remainders).
4. **Interactions.** Every user draws items i.i.d. until it holds ``d_u`` distinct
   ones ("successive sampling", i.e. weighted sampling without replacement): a
   draw comes from the home cluster with probability ``affinity = 1 - bridge -
   noise``, from the secondary cluster with probability ``bridge`` and from the
   whole catalogue with probability ``noise``; inside the chosen pool the item is
   drawn proportionally to its popularity weight. Implementation: ``d_u`` draws,
   deduplication, a few rounds of top-up draws kept in draw order; the users still
   short after that (heavy users that exhaust a small cluster) finish exactly
   with Efraimidis–Spirakis keys ``Exp(1) / p_uv`` over the items they can reach
   and do not hold yet -- the same process, computed without rejections.

Graph structure. With ``noise > 0`` every item is a draw away from every user, so
the MovieLens- and Netflix-shaped presets are dense: in practice every item with
an interaction lies within distance 3 of every user in the bipartite graph
(labels 3 and 4 of DESIGN.md are empty, as on the real ML-100K/ML-1M). With
``noise == 0`` and ``bridge_span == 1`` (the ``alibaba`` and ``sparse-small``
presets) a user with home ``c`` and secondary ``c + 1`` reaches the clusters
``c - 1 .. c + 2`` in 3 hops, ``c - 2`` and ``c + 3`` in 5 hops and the rest of
the ring in 7 or more, so with 12 clusters about 1/3 of the (user, item) pairs are
at distance ≤ 3, 1/6 at distance 5 and 1/2 at distance ≥ 7 (measured by BFS:
sparse-small 0.33 / 0.17 / 0.49, alibaba 0.33 / 0.17 / 0.51): the strata of the
stratified sampler are all populated.

Output. Rows are sorted by (user, item); ids are 0-based int64; ``value`` is 1.0,
``implicit=True``; ``timestamp`` is -1 (no temporal structure is planted, as for a
file without timestamps); there are no duplicate pairs and exactly
``n_interactions`` rows. ``categories`` holds the planted cluster of every item
(one category per item, names ``"c0"``, ``"c1"``, ...), standing in for genres.
Items or users can end up with few interactions; the usual 10-core filter drops
them (few users: degrees start at ``min_degree``).

``scale`` multiplies users, items and interactions (not the number of clusters, so
the distance strata keep their proportions); the mean degrees stay, the density
grows as 1 / scale.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np

from xplo_jax.data.types import ItemCategories, RawInteractions
from xplo_jax.errors import ConfigError

__all__ = ["SyntheticSpec", "PRESETS", "generate", "preset_names", "resolve_spec"]

logger = logging.getLogger(__name__)

# Draws per processing chunk (users are never split across chunks, so per-chunk
# deduplication is exact). Fixed: the output depends on it only through the
# order in which random numbers are consumed, so changing it changes the data.
_CHUNK_DRAWS = 1 << 22
# Top-up rounds by repeated draws before the exact fill of the users still short.
_TOPUP_ROUNDS = 3
# Budget of (user, candidate item) cells per batch of the exact fill.
_FILL_CELLS = 1 << 23


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """Sizes and structure of a synthetic dataset (see the module docstring).

  Attributes:
    n_users, n_items, n_interactions: sizes at scale 1 (interactions are distinct
      (user, item) pairs, exactly this many).
    n_clusters: planted item clusters (taste groups), on a ring.
    popularity_exponent: Zipf exponent ``s`` of the in-cluster popularity.
    popularity_offset: Zipf–Mandelbrot offset ``q`` (larger: flatter head).
    bridge: probability that a draw comes from the user's secondary cluster.
    noise: probability that a draw comes from the whole catalogue (global
      popularity); 0 keeps the graph sparse (far clusters unreachable in 3 hops).
    bridge_span: 0: the secondary cluster is any other cluster; k > 0: a ring
      neighbour at offset ±1..±k.
    cluster_size_sigma: lognormal spread of the cluster sizes.
    min_degree: floor of the user degrees (clamped to the mean degree).
    degree_sigma: lognormal spread of the degree excess over the floor.
    max_degree_frac: a user holds at most this fraction of the items it can reach.
    name: the preset's name, for ``RawInteractions.source``.
  """
  n_users: int
  n_items: int
  n_interactions: int
  n_clusters: int
  popularity_exponent: float = 0.8
  popularity_offset: float = 5.0
  bridge: float = 0.2
  noise: float = 0.2
  bridge_span: int = 0
  cluster_size_sigma: float = 0.3
  min_degree: int = 20
  degree_sigma: float = 1.0
  max_degree_frac: float = 0.4
  name: str = "custom"

  @property
  def affinity(self) -> float:
    """Probability that a draw comes from the user's home cluster."""
    a = 1.0 - self.bridge - self.noise
    return a if a > 1e-12 else 0.0  # 1 - 0.7 - 0.3 is 5.6e-17, not a pool

  def validate(self) -> None:
    """Raises ``ConfigError`` naming the first field out of range."""
    def bad(field, expected, value):
      raise ConfigError(f"SyntheticSpec.{field}: expected {expected}, got {value!r}")
    for field in ("n_users", "n_items", "n_interactions", "n_clusters", "min_degree"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        bad(field, "an integer >= 1", v)
    if self.n_clusters > self.n_items:
      bad("n_clusters", f"at most n_items = {self.n_items}", self.n_clusters)
    if isinstance(self.bridge_span, bool) or not isinstance(self.bridge_span, (int, np.integer)) \
        or self.bridge_span < 0:
      bad("bridge_span", "an integer >= 0", self.bridge_span)
    for field in ("bridge", "noise"):
      v = getattr(self, field)
      if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        bad(field, "a probability in [0, 1]", v)
    if self.bridge + self.noise > 1.0 + 1e-12:
      bad("bridge", f"bridge + noise <= 1 (noise = {self.noise})", self.bridge)
    if not (math.isfinite(self.popularity_exponent) and self.popularity_exponent >= 0):
      bad("popularity_exponent", "a finite number >= 0", self.popularity_exponent)
    if not (math.isfinite(self.popularity_offset) and self.popularity_offset > 0):
      bad("popularity_offset", "a finite number > 0", self.popularity_offset)
    for field in ("cluster_size_sigma", "degree_sigma"):
      v = getattr(self, field)
      if not (math.isfinite(v) and v >= 0):
        bad(field, "a finite number >= 0", v)
    if not (math.isfinite(self.max_degree_frac) and 0.0 < self.max_degree_frac <= 1.0):
      bad("max_degree_frac", "a fraction in (0, 1]", self.max_degree_frac)
    cells = int(self.n_users) * int(self.n_items)
    if self.n_interactions > cells:
      raise ConfigError(
          f"SyntheticSpec.n_interactions: {self.n_interactions:,} interactions asked for, but "
          f"{self.n_users:,} users x {self.n_items:,} items allow at most {cells:,} distinct pairs")

  def scaled(self, scale: float) -> "SyntheticSpec":
    """This spec with users, items and interactions multiplied by ``scale``.

    The cluster count is kept (clamped to the item count) so that the graph's
    distance strata keep their proportions.
    """
    scale = _check_scale(scale)
    if scale == 1.0:
      return self
    n_users = max(1, int(round(self.n_users * scale)))
    n_items = max(1, int(round(self.n_items * scale)))
    n_inter = max(1, int(round(self.n_interactions * scale)))
    return dataclasses.replace(self, n_users=n_users, n_items=n_items, n_interactions=n_inter,
                               n_clusters=min(self.n_clusters, n_items))


PRESETS: dict[str, SyntheticSpec] = {
    # Unit tests: milliseconds, survives 10-core filtering with nearly every user.
    "tiny": SyntheticSpec(n_users=300, n_items=200, n_interactions=9_000, n_clusters=5,
                          popularity_exponent=0.6, popularity_offset=5.0, bridge=0.15,
                          noise=0.15, min_degree=14, degree_sigma=0.8, max_degree_frac=0.4,
                          name="tiny"),
    # The default: MovieLens 100K's shape (943 x 1,682 x 100,000), dense graph.
    "ml-100k": SyntheticSpec(n_users=943, n_items=1_682, n_interactions=100_000, n_clusters=16,
                             popularity_exponent=1.2, popularity_offset=3.0, bridge=0.2,
                             noise=0.3, min_degree=20, degree_sigma=1.0, max_degree_frac=0.4,
                             name="ml-100k"),
    # Paper shapes (Table 1), for scale benchmarks.
    "ml-10m": SyntheticSpec(n_users=69_838, n_items=8_940, n_interactions=10_000_000,
                            n_clusters=32, popularity_exponent=1.2, popularity_offset=3.0,
                            bridge=0.2, noise=0.3, min_degree=20, degree_sigma=1.0,
                            max_degree_frac=0.4, name="ml-10m"),
    "netflix": SyntheticSpec(n_users=65_533, n_items=17_759, n_interactions=25_000_000,
                             n_clusters=32, popularity_exponent=1.2, popularity_offset=3.0,
                             bridge=0.2, noise=0.3, min_degree=20, degree_sigma=1.0,
                             max_degree_frac=0.4, name="netflix"),
    # Sparse in the graph sense: no global noise, bridges only to ring neighbours,
    # so labels 3 (Q = 5) and 4 (Q >= 7) are populated.
    "alibaba": SyntheticSpec(n_users=49_235, n_items=234_647, n_interactions=56_000_000,
                             n_clusters=12, popularity_exponent=0.8, popularity_offset=10.0,
                             bridge=0.25, noise=0.0, bridge_span=1, cluster_size_sigma=0.2,
                             min_degree=20, degree_sigma=1.0, max_degree_frac=0.5,
                             name="alibaba"),
    # A few thousand users/items with the alibaba structure, for tests.
    "sparse-small": SyntheticSpec(n_users=3_000, n_items=2_400, n_interactions=90_000,
                                  n_clusters=12, popularity_exponent=0.6, popularity_offset=5.0,
                                  bridge=0.25, noise=0.0, bridge_span=1,
                                  cluster_size_sigma=0.2, min_degree=14, degree_sigma=0.8,
                                  max_degree_frac=0.5, name="sparse-small"),
}


def preset_names() -> tuple[str, ...]:
  """The names of the built-in presets."""
  return tuple(PRESETS)


def _check_scale(scale) -> float:
  try:
    s = float(scale)
  except (TypeError, ValueError):
    raise ConfigError(f"data.synthetic_scale: expected a positive number, got {scale!r}") from None
  if isinstance(scale, bool) or not math.isfinite(s) or s <= 0:
    raise ConfigError(f"data.synthetic_scale: expected a positive finite number, got {scale!r}")
  return s


def resolve_spec(preset: str | SyntheticSpec, scale: float = 1.0) -> SyntheticSpec:
  """The validated spec of ``preset`` (a name in ``PRESETS`` or a spec) at ``scale``.

  Raises:
    ConfigError: unknown preset name, scale <= 0, or a spec out of range (e.g.
      more interactions than users x items at this scale).
  """
  if isinstance(preset, SyntheticSpec):
    spec = preset
  elif isinstance(preset, str):
    if preset not in PRESETS:
      raise ConfigError(f"data.synthetic_preset: unknown preset {preset!r}; "
                        f"expected one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
  else:
    raise ConfigError(f"data.synthetic_preset: expected a preset name or a SyntheticSpec, "
                      f"got {type(preset).__name__}")
  scale = _check_scale(scale)
  scaled = spec.scaled(scale)
  try:
    scaled.validate()
  except ConfigError as e:
    raise _at_scale(e, spec, scale) from None
  return scaled


def _at_scale(error: ConfigError, spec: SyntheticSpec, scale: float) -> ConfigError:
  """``error``, prefixed with the preset and scale when the scale is not 1."""
  if scale == 1.0:
    return error
  return ConfigError(f"data.synthetic_scale: preset {spec.name!r} at scale {scale:g}: {error}")


def _check_seed(seed) -> int:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ConfigError(f"data.synthetic_seed: expected an integer >= 0, got {seed!r}")
  return int(seed)


def generate(preset: str | SyntheticSpec = "ml-100k", scale: float = 1.0,
             seed: int = 0) -> RawInteractions:
  """Generates a synthetic implicit dataset (process in the module docstring).

  Args:
    preset: a name in ``PRESETS`` (``tiny``, ``ml-100k``, ``ml-10m``, ``netflix``,
      ``alibaba``, ``sparse-small``) or a ``SyntheticSpec``.
    scale: multiplies users, items and interactions (> 0).
    seed: the random seed (>= 0); same (preset, scale, seed) → identical arrays.

  Returns:
    ``RawInteractions`` with [n] int64 ``user`` in [0, n_users) and ``item`` in
    [0, n_items), sorted by (user, item) and without duplicates; float32
    ``value`` = 1; int64 ``timestamp`` = -1; ``implicit=True``;
    ``categories`` = the planted cluster of every item (names ``c0``, ``c1``, ...);
    ``source`` = ``"synthetic:<preset>@<scale>,seed=<seed>"``.

  Raises:
    ConfigError: unknown preset, scale <= 0, bad seed, or a spec that cannot be
      realised (more interactions than users x items, or than the users' degree
      caps allow).
  """
  t0 = time.perf_counter()
  spec = resolve_spec(preset, scale)
  scale = _check_scale(scale)
  seed = _check_seed(seed)
  structure_seq, draw_seq = np.random.SeedSequence([seed, 0x5EED_DA7A]).spawn(2)
  rng = np.random.default_rng(structure_seq)

  n_u, n_i, n_c = int(spec.n_users), int(spec.n_items), int(spec.n_clusters)
  # 1. Item clusters: sizes, random membership, in-cluster popularity ranks.
  sizes = _cluster_sizes(rng, n_i, n_c, spec.cluster_size_sigma)
  start = np.zeros(n_c + 1, dtype=np.int64)
  np.cumsum(sizes, out=start[1:])
  pos_item = rng.permutation(n_i).astype(np.int64)       # position -> item id
  cluster_of_pos = np.repeat(np.arange(n_c, dtype=np.int32), sizes)
  rank = np.arange(n_i, dtype=np.int64) - start[cluster_of_pos]
  weight = (rank + spec.popularity_offset) ** (-float(spec.popularity_exponent))
  item_cluster = np.empty(n_i, dtype=np.int32)
  item_cluster[pos_item] = cluster_of_pos

  # 2. User tastes.
  home = rng.choice(n_c, size=n_u, p=sizes / sizes.sum()).astype(np.int64)
  if n_c == 1:
    second = home.copy()
  elif spec.bridge_span == 0:
    second = (home + rng.integers(1, n_c, size=n_u)) % n_c
  else:
    span = int(spec.bridge_span)
    off = rng.integers(1, span + 1, size=n_u) * np.where(rng.random(n_u) < 0.5, -1, 1)
    second = (home + off) % n_c

  # 3. Degrees, capped by the number of items each user can reach.
  reach = _reachable_counts(spec, sizes, home, second)
  try:
    degree = _degrees(rng, spec, reach)
  except ConfigError as e:
    raise _at_scale(e, spec, scale) from None

  # 4. Distinct items per user by successive sampling, chunk by chunk.
  sampler = _Sampler(spec, start, weight, home, second, pos_item)
  draw_rng = np.random.default_rng(draw_seq)
  codes = np.empty(int(spec.n_interactions), dtype=np.int64)
  bounds = _chunk_bounds(degree, _CHUNK_DRAWS)
  filled = 0
  n_exact = 0
  for u0, u1 in zip(bounds[:-1], bounds[1:]):
    chunk, exact = _sample_chunk(sampler, draw_rng, u0, u1, degree[u0:u1], n_i)
    codes[filled:filled + len(chunk)] = chunk  # sorted; chunks are ranges of users
    filled += len(chunk)
    n_exact += exact
  assert filled == len(codes), (filled, len(codes))
  user = codes // n_i
  item = codes - user * n_i
  del codes

  n = len(user)
  source = f"synthetic:{spec.name}@{scale:.12g},seed={seed}"
  categories = ItemCategories(item=np.arange(n_i, dtype=np.int64), category=item_cluster,
                              names=tuple(f"c{c}" for c in range(n_c)))
  out = RawInteractions(user=user, item=item, value=np.ones(n, dtype=np.float32),
                        timestamp=np.full(n, -1, dtype=np.int64), source=source,
                        implicit=True, categories=categories)
  logger.info("%s: %d users x %d items, %d interactions (density %.4f%%), %d clusters, "
              "%d users finished exactly, %.2f s", source, n_u, n_i, n, 100.0 * n / (n_u * n_i),
              n_c, n_exact, time.perf_counter() - t0)
  return out


def _cluster_sizes(rng: np.random.Generator, n_items: int, n_clusters: int,
                   sigma: float) -> np.ndarray:
  """[n_clusters] int64 sizes >= 1 summing to n_items, ∝ lognormal(0, sigma)."""
  w = np.exp(sigma * rng.standard_normal(n_clusters))
  extra = n_items - n_clusters
  share = extra * w / w.sum()
  sizes = np.floor(share).astype(np.int64)
  rest = extra - int(sizes.sum())
  if rest:
    sizes[np.argsort(-(share - sizes), kind="stable")[:rest]] += 1
  return sizes + 1


def _reachable_counts(spec: SyntheticSpec, sizes: np.ndarray, home: np.ndarray,
                      second: np.ndarray) -> np.ndarray:
  """[n_users] how many distinct items each user can draw at all."""
  if spec.noise > 0:
    return np.full(len(home), int(spec.n_items), dtype=np.int64)
  reach = np.zeros(len(home), dtype=np.int64)
  if spec.affinity > 0:
    reach += sizes[home]
  if spec.bridge > 0:
    reach += np.where((second != home) | (spec.affinity <= 0), sizes[second], 0)
  return reach


def _degrees(rng: np.random.Generator, spec: SyntheticSpec, reach: np.ndarray) -> np.ndarray:
  """[n_users] int64 degrees: floor + lognormal excess, capped, summing to n_interactions."""
  n_u, total = int(spec.n_users), int(spec.n_interactions)
  cap = np.minimum(reach, np.maximum(np.floor(spec.max_degree_frac * reach).astype(np.int64),
                                     min(int(spec.min_degree), total // n_u)))
  if int(cap.sum()) < total:
    raise ConfigError(
        f"SyntheticSpec.n_interactions: {total:,} interactions asked for, but with "
        f"max_degree_frac = {spec.max_degree_frac} the {n_u:,} users can hold at most "
        f"{int(cap.sum()):,} (mean degree {total / n_u:.0f}, mean cap {cap.mean():.0f}); "
        f"use fewer interactions, more items or a larger scale")
  floor = np.minimum(cap, min(int(spec.min_degree), total // n_u)).astype(np.float64)
  w = np.exp(spec.degree_sigma * rng.standard_normal(n_u))
  d = floor.copy()
  free = np.ones(n_u, dtype=bool)
  for _ in range(n_u + 1):  # water-filling: the capped users' surplus goes to the others
    left = total - d.sum()
    if left <= 1e-6 * total or not free.any():
      break
    d[free] += left * w[free] / w[free].sum()
    over = d > cap
    d[over] = cap[over]
    free &= ~over
  # Integers by largest remainders, never above the caps.
  deg = np.floor(d + 1e-9).astype(np.int64)
  deg = np.minimum(deg, cap)
  rest = total - int(deg.sum())
  while rest > 0:
    room = np.flatnonzero(deg < cap)
    frac = d[room] - deg[room]
    take = room[np.argsort(-frac, kind="stable")[:rest]]
    deg[take] += 1
    rest = total - int(deg.sum())
  while rest < 0:  # only through float round-off
    top = np.argsort(-deg, kind="stable")[:-rest]
    deg[top] -= 1
    rest = total - int(deg.sum())
  return deg


class _Sampler:
  """Draws items for users (inverse CDF over the cluster-ordered item positions).

  A draw picks a pool (0: home cluster, 1: secondary cluster, 2: whole
  catalogue) and then a position in the pool's range ``[lo, hi)`` of the
  cluster-ordered items; the per-(pool, user) bounds and their cumulative weights
  are gathered from flat [3 * n_users] tables (index ``pool * n_users + user``).
  """

  def __init__(self, spec: SyntheticSpec, start: np.ndarray, weight: np.ndarray,
               home: np.ndarray, second: np.ndarray, pos_item: np.ndarray):
    n_u = len(home)
    self.n_users = n_u
    self.weight = weight
    self.cum_w = np.zeros(len(weight) + 1, dtype=np.float64)
    np.cumsum(weight, out=self.cum_w[1:])
    self.pos_item = pos_item
    self.p_pool = np.array([spec.affinity, spec.bridge, spec.noise])
    # Thresholds on one uniform draw; an empty pool can never be hit, whatever
    # the round-off of 1 - bridge - noise.
    self.p_home = spec.affinity if spec.bridge > 0 or spec.noise > 0 else 2.0
    self.p_second = spec.affinity + spec.bridge if spec.noise > 0 else 2.0
    self.lo = np.concatenate([start[home], start[second], np.zeros(n_u, np.int64)])
    self.hi = np.concatenate([start[home + 1], start[second + 1],
                              np.full(n_u, int(spec.n_items), np.int64)])
    self.w_lo = self.cum_w[self.lo]
    self.w_span = self.cum_w[self.hi] - self.w_lo

  def draw(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
    """[n] int64 item ids drawn for the [n] ``users``."""
    comp = rng.random(len(users))
    pool = (comp >= self.p_home).astype(np.int64)
    pool += comp >= self.p_second
    pool *= self.n_users
    pool += users
    r = rng.random(len(users), out=comp)
    r *= self.w_span[pool]
    r += self.w_lo[pool]
    pos = np.searchsorted(self.cum_w, r, side="right")
    pos -= 1
    np.clip(pos, self.lo[pool], self.hi[pool] - 1, out=pos)
    return self.pos_item[pos]

  def support(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items the ``users`` can draw, with the probability of one draw.

    Returns:
      owner: [m] index into ``users``, grouped; item: [m] item ids; prob: [m]
      the probability that one draw of the owner yields the item.
    """
    n_u = self.n_users
    pools = [k for k in range(3) if self.p_pool[k] > 0]
    if 2 in pools:  # the catalogue contains the clusters
      pools = [2]
    lo = np.stack([self.lo[k * n_u + users] for k in pools], axis=1)   # [S, P]
    hi = np.stack([self.hi[k * n_u + users] for k in pools], axis=1)
    if len(pools) == 2:  # secondary == home (one cluster): count it once
      hi[:, 1] = np.where(lo[:, 1] == lo[:, 0], lo[:, 1], hi[:, 1])
    length = (hi - lo).ravel()
    first = np.repeat(lo.ravel(), length)
    offset = np.repeat(np.cumsum(length) - length, length)
    pos = first + (np.arange(len(first)) - offset)
    owner = np.repeat(np.arange(len(users)), (hi - lo).sum(1))
    u = users[owner]
    prob = np.zeros(len(pos))
    for k in range(3):
      if self.p_pool[k] > 0:
        idx = k * n_u + u
        inside = (pos >= self.lo[idx]) & (pos < self.hi[idx])
        prob += np.where(inside, self.p_pool[k] / self.w_span[idx], 0.0)
    prob *= self.weight[pos]
    return owner, self.pos_item[pos], prob


def _exact_fill(sampler: _Sampler, rng: np.random.Generator, users: np.ndarray,
                need: np.ndarray, have: np.ndarray, n_items: int) -> np.ndarray:
  """Codes of ``need`` more distinct items for each of ``users``, exactly.

  Successive sampling continued from the held set: among the reachable items not
  held, the ones with the smallest keys ``Exp(1) / p`` (Efraimidis–Spirakis).
  """
  out = []
  reach = (sampler.hi - sampler.lo).reshape(3, -1)[:, users].sum(0)
  bounds = _chunk_bounds(np.maximum(reach, 1), _FILL_CELLS)
  for b0, b1 in zip(bounds[:-1], bounds[1:]):
    batch = users[b0:b1]
    owner, item, prob = sampler.support(batch)
    code = batch[owner] * n_items + item
    if len(have):
      idx = np.minimum(np.searchsorted(have, code), len(have) - 1)
      free = have[idx] != code
      owner, code, prob = owner[free], code[free], prob[free]
    key = rng.exponential(size=len(code)) / prob
    order = np.lexsort((key, owner))
    owner, code = owner[order], code[order]
    rank = np.arange(len(code)) - np.searchsorted(owner, owner, side="left")
    out.append(code[rank < need[b0:b1][owner]])
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def _chunk_bounds(degree: np.ndarray, max_draws: int) -> np.ndarray:
  """User boundaries [0, ..., n_users] of chunks of about ``max_draws`` draws."""
  csum = np.cumsum(degree)
  cuts = np.searchsorted(csum, np.arange(max_draws, int(csum[-1]), max_draws), side="left") + 1
  return np.unique(np.concatenate([[0], cuts, [len(degree)]])).astype(np.int64)


def _sorted_unique(codes: np.ndarray) -> np.ndarray:
  """np.unique for int64 codes by an in-place sort (numpy's hash unique is slower here)."""
  codes.sort()
  if len(codes) < 2:
    return codes
  keep = np.empty(len(codes), dtype=bool)
  keep[0] = True
  np.not_equal(codes[1:], codes[:-1], out=keep[1:])
  return codes[keep]


def _sample_chunk(sampler: _Sampler, rng: np.random.Generator, u0: int, u1: int,
                  degree: np.ndarray, n_items: int) -> tuple[np.ndarray, int]:
  """Distinct (user, item) codes ``user * n_items + item`` of users u0..u1-1.

  Draws ``d_u`` items per user, deduplicates, tops up the users still short with
  fresh draws kept in draw order (so the result is successive sampling), and
  finishes the rest with ``_exact_fill``. Returns the codes sorted and the
  number of users that needed the exact fill.
  """
  users = np.arange(u0, u1, dtype=np.int64)
  rep = np.repeat(users, degree)
  have = _sorted_unique(rep * n_items + sampler.draw(rng, rep))
  del rep
  for rounds in range(_TOPUP_ROUNDS + 1):
    count = np.bincount(have // n_items - u0, minlength=u1 - u0)
    deficit = degree - count
    short = np.flatnonzero(deficit > 0)
    if len(short) == 0:
      return have, 0
    if rounds == _TOPUP_ROUNDS:
      break
    rep = np.repeat(users[short], deficit[short] << (rounds + 1))
    new = rep * n_items + sampler.draw(rng, rep)
    del rep
    # Distinct new codes (sorted), each with the index of its first draw.
    uniq, first = np.unique(new, return_index=True)
    if len(have):  # drop the ones already held; sorted queries search fast
      idx = np.minimum(np.searchsorted(have, uniq), len(have) - 1)
      first = first[have[idx] != uniq]
    # Back to draw order; draws are grouped by user, so these are too.
    first.sort()
    new = new[first]
    owner = new // n_items - u0
    rank = np.arange(len(new)) - np.searchsorted(owner, owner, side="left")
    new = np.sort(new[rank < deficit[owner]])
    # Two sorted runs: the stable sort (timsort) merges them in linear time.
    have = np.sort(np.concatenate([have, new]), kind="stable")
  new = _exact_fill(sampler, rng, users[short], deficit[short], have, n_items)
  have = np.sort(np.concatenate([have, np.sort(new)]), kind="stable")
  return have, len(short)
