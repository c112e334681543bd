"""Preprocessing against brute-force oracles (exact equality), resume and corruption."""

from __future__ import annotations

import dataclasses
import json
import logging
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from xplo_jax.config import PreprocessConfig
from xplo_jax.data.split import split_dataset
from xplo_jax.data.types import Dataset, Pairs, Split
from xplo_jax.errors import ShardError
from xplo_jax.preprocess import open_shards, preprocess
from xplo_jax.preprocess import pipeline as pipeline_lib
from xplo_jax.preprocess.knn import topk_rows
from xplo_jax.preprocess.proximity import GraphOps, select_second_order


def random_split(seed: int, nu: int = 60, ni: int = 45, clusters: int = 3, p_in: float = 0.25,
                 p_out: float = 0.004) -> Split:
  """A small random graph with weak cluster structure (so distances 5 and >= 7 occur).

  Cluster 0 has no cross-cluster edges at all, so it is unreachable from the others.
  """
  rng = np.random.default_rng(seed)
  cu = np.arange(nu) % clusters
  ci = np.arange(ni) % clusters
  prob = np.where(cu[:, None] == ci[None, :], p_in, p_out)
  prob[(cu[:, None] == 0) != (ci[None, :] == 0)] = 0.0
  m = rng.random((nu, ni)) < prob
  per = ni // clusters
  k1 = rng.integers(0, per, nu)
  for k in (k1, (k1 + 1) % per):                             # every user has >= 2 items, in its cluster
    m[np.arange(nu), cu + clusters * k] = True
  u, i = np.nonzero(m)
  ds = Dataset("rand", Pairs(u.astype(np.int32), i.astype(np.int32)), nu, ni, np.arange(nu), np.arange(ni))
  return split_dataset(ds, seed=seed)


def dense_train(split: Split) -> np.ndarray:
  e = np.zeros((split.n_users, split.n_items), np.int64)
  e[split.train.user, split.train.item] = 1
  return e


def bfs_distances(e: np.ndarray) -> np.ndarray:
  """User→item shortest-path lengths in the bipartite graph (inf when unreachable)."""
  nu, ni = e.shape
  adj = sp.bmat([[None, sp.csr_matrix(e)], [sp.csr_matrix(e.T), None]], format="csr")
  d = shortest_path(adj, unweighted=True, directed=False, indices=np.arange(nu))
  return d[:, nu:]


def brute_a2(e2_row, a1_row, mode, threshold, cap):
  cand = [v for v in range(len(e2_row)) if e2_row[v] > 0 and not a1_row[v]]
  if not cand:
    return []
  if mode == "quantile":
    tau = np.quantile(np.array([e2_row[v] for v in cand], dtype=np.int64), threshold)
    sel = [v for v in cand if e2_row[v] >= tau]
  elif mode == "absolute":
    sel = [v for v in cand if e2_row[v] >= threshold]
  else:
    sel = sorted(cand, key=lambda v: (-e2_row[v], v))[:int(threshold)]
  if cap and len(sel) > cap:
    sel = sorted(sel, key=lambda v: (-e2_row[v], v))[:cap]
  return sorted(sel)


def brute_labels(e, a2_sets, dist):
  labels = np.full(e.shape, 4, np.uint8)
  for u in range(e.shape[0]):
    for v in range(e.shape[1]):
      q = dist[u, v]
      if q == 1:
        labels[u, v] = 0
      elif q == 3:
        labels[u, v] = 1 if v in a2_sets[u] else 2
      elif q == 5:
        labels[u, v] = 3
  return labels


def brute_knn(e, k):
  ni = e.shape[1]
  users = [set(np.flatnonzero(e[:, i])) for i in range(ni)]
  ids, sims = [], []
  for i in range(ni):
    scored = []
    for j in range(ni):
      if j == i:
        continue
      inter, union = len(users[i] & users[j]), len(users[i] | users[j])
      scored.append((-(Fraction(inter, union) if union else Fraction(0)), j))
    scored.sort()
    top = [(j, -s) for s, j in scored[:k] if s < 0]
    ids.append([j for j, _ in top] + [i] * (k - len(top)))
    sims.append([float(s) for _, s in top] + [0.0] * (k - len(top)))
  return np.array(ids), np.array(sims)


MODES = [("quantile", 0.9), ("quantile", 0.5), ("absolute", 2), ("topn", 5)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_second_order_counts_equal_dense_product(seed, backend):
  split = random_split(seed)
  e = dense_train(split)
  ops = GraphOps(split.train.csr(split.n_users, split.n_items), 1e9, backend=backend)
  got = ops.second_order(ops.rows(0, split.n_users))
  np.testing.assert_array_equal(got, e @ e.T @ e)


@pytest.mark.parametrize("mode,threshold", MODES)
@pytest.mark.parametrize("cap", [0, 3])
def test_a2_selection_matches_brute_force(mode, threshold, cap):
  split = random_split(2)
  e = dense_train(split)
  e2 = e @ e.T @ e
  for u in range(split.n_users):
    got = select_second_order(e2[u].astype(np.float32), e[u] > 0, mode, threshold, cap)
    assert got.tolist() == brute_a2(e2[u], e[u] > 0, mode, threshold, cap), (u, mode)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("mode,threshold", MODES)
@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_shards_match_bfs_oracle(tmp_path, seed, mode, threshold, backend):
  split = random_split(seed)
  cfg = PreprocessConfig(threshold_mode=mode, threshold=threshold, a2_cap=6, knn=7, shard_users=17,
                         memory_gb=1e-6, width_multiple=8)                     # tiny budget: 1-user chunks
  data = preprocess(split, cfg, tmp_path / "out", progress=False, backend=backend)
  e = dense_train(split)
  e2 = e @ e.T @ e
  dist = bfs_distances(e)
  a2_sets = [set(brute_a2(e2[u], e[u] > 0, mode, threshold, 6)) for u in range(split.n_users)]
  want_labels = brute_labels(e, a2_sets, dist)
  b = data.all_users()
  np.testing.assert_array_equal(b["labels"], want_labels)
  for u in range(split.n_users):
    assert b["a1_ids"][u, :b["a1_len"][u]].tolist() == np.flatnonzero(e[u]).tolist()
    assert b["a2_ids"][u, :b["a2_len"][u]].tolist() == sorted(a2_sets[u])
  assert b["a1_ids"].shape[1] % 8 == 0 and b["a2_ids"].shape[1] % 8 == 0
  # Strata: zeros of row k (label != its positive label) by Q-class {1, 3, 5, >= 7}.
  qclass = np.select([dist == 1, dist == 3, dist == 5], [0, 1, 2], 3)
  for k, pos in enumerate((0, 1)):
    for t in range(4):
      want = ((want_labels != pos) & (qclass == t)).sum(axis=1)
      np.testing.assert_array_equal(b["strata"][:, k, t], want)
  # The random graphs do have far items: the test covers labels 3 and 4.
  if seed == 0:
    assert (want_labels == 3).any() and (want_labels == 4).any()
  ids, sims = brute_knn(e, 7)
  np.testing.assert_array_equal(data.knn_ids, ids)
  np.testing.assert_allclose(data.knn_sim, sims, rtol=1e-6)
  np.testing.assert_array_equal(data.knn_count, (sims > 0).sum(axis=1))


def test_topk_rows_tie_break_is_by_smaller_index():
  vals = np.array([[0.5, 0.9, 0.5, 0.5, 0.1, 0.9]])
  assert topk_rows(vals, 3).tolist() == [[1, 5, 0]]
  assert topk_rows(vals, 4).tolist() == [[1, 5, 0, 2]]
  rng = np.random.default_rng(0)
  v = rng.integers(0, 4, (50, 30)).astype(float)
  want = np.array([sorted(range(30), key=lambda j: (-r[j], j))[:6] for r in v])
  np.testing.assert_array_equal(topk_rows(v, 6), want)


def test_knn_clamped_with_warning(tmp_path, caplog):
  split = random_split(0, nu=30, ni=12)
  with caplog.at_level(logging.WARNING):
    data = preprocess(split, PreprocessConfig(knn=50), tmp_path / "o", progress=False)
  assert data.manifest["knn"] == 11 and data.knn_ids.shape == (12, 11)
  assert any("clamped" in r.message for r in caplog.records)


def test_no_leakage_valid_and_test_do_not_change_structures(tmp_path):
  split = random_split(4)
  # Same train, different held-out pairs: every train-derived array must be identical.
  other = dataclasses.replace(split, valid=Pairs(split.test.user, split.test.item),
                              test=Pairs(split.valid.user, split.valid.item))
  cfg = PreprocessConfig(knn=5, shard_users=25)
  a = preprocess(split, cfg, tmp_path / "a", progress=False).all_users()
  b = preprocess(other, cfg, tmp_path / "b", progress=False).all_users()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  # And no held-out pair is ever a first-order positive.
  for held in (split.valid, split.test):
    assert (a["labels"][held.user, held.item] != 0).all()


def test_deterministic_byte_identical(tmp_path):
  split = random_split(5)
  m1 = preprocess(split, PreprocessConfig(knn=5), tmp_path / "a", progress=False).manifest
  m2 = preprocess(split, PreprocessConfig(knn=5, memory_gb=1e-6), tmp_path / "b", progress=False).manifest
  assert {k: v["sha256"] for k, v in m1["files"].items()} == {k: v["sha256"] for k, v in m2["files"].items()}
  assert m1["fingerprint"] == m2["fingerprint"]      # the memory budget does not change the output


def test_resume_recomputes_only_incomplete_shards(tmp_path, monkeypatch):
  split = random_split(6)
  cfg = PreprocessConfig(knn=5, shard_users=10)
  out = tmp_path / "o"
  full = preprocess(split, cfg, out, progress=False)
  n_shards = len(full.shards)
  # Simulate an interrupted run: the manifest and the last shard's done.json never got written.
  (out / "manifest.json").unlink()
  (out / "shards" / f"{n_shards - 1:05d}" / "done.json").unlink()
  calls = []
  real = pipeline_lib._write_shard
  monkeypatch.setattr(pipeline_lib, "_write_shard", lambda folder, *a: calls.append(folder.name) or real(folder, *a))
  again = preprocess(split, cfg, out, progress=False)
  assert calls == [f"{n_shards - 1:05d}"]
  assert again.manifest["files"] == full.manifest["files"]
  # A corrupted shard file is detected and only that shard is recomputed.
  (out / "manifest.json").unlink()
  lab = out / "shards" / "00001" / "labels.npy"
  raw = bytearray(lab.read_bytes())
  raw[-1] ^= 0xFF
  lab.write_bytes(bytes(raw))
  calls.clear()
  preprocess(split, cfg, out, progress=False)
  assert calls == ["00001"]


def test_corrupted_shard_is_reported_by_reader(tmp_path):
  split = random_split(7)
  out = tmp_path / "o"
  preprocess(split, PreprocessConfig(knn=5), out, progress=False)
  lab = out / "shards" / "00000" / "labels.npy"
  raw = bytearray(lab.read_bytes())
  raw[-3] ^= 0x01
  lab.write_bytes(bytes(raw))
  with pytest.raises(ShardError, match=r"labels\.npy: checksum mismatch"):
    open_shards(out)


def test_manifest_from_another_config_is_an_error(tmp_path):
  split = random_split(8)
  out = tmp_path / "o"
  data = preprocess(split, PreprocessConfig(knn=5), out, progress=False)
  with pytest.raises(ShardError, match="another config"):
    preprocess(split, PreprocessConfig(knn=6), out, progress=False)
  with pytest.raises(ShardError, match="another config"):
    open_shards(out, expect_fingerprint="0" * 16)
  replaced = preprocess(split, PreprocessConfig(knn=6), out, progress=False, overwrite=True)
  assert replaced.manifest["knn"] == 6 and replaced.fingerprint != data.fingerprint


def test_truncated_manifest_is_reported(tmp_path):
  split = random_split(9)
  out = tmp_path / "o"
  preprocess(split, PreprocessConfig(knn=5), out, progress=False)
  (out / "manifest.json").write_text('{"format": ')
  with pytest.raises(ShardError, match="not valid JSON"):
    open_shards(out)


def test_inspect_cli_prints_the_users_subgraph(tmp_path, capsys):
  from xplo_jax.preprocess.__main__ import main
  split = random_split(10)
  out = tmp_path / "o"
  data = preprocess(split, PreprocessConfig(knn=5), out, progress=False)
  assert main(["inspect", str(out), "--user", "3"]) == 0
  got = json.loads(capsys.readouterr().out)
  e = dense_train(split)
  assert got["a1"] == np.flatnonzero(e[3]).tolist()
  assert sum(got["label_counts"].values()) == split.n_items
  assert got["strata"]["row1"] == data.batch(np.array([3]))["strata"][0, 0].tolist()
