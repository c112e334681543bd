"""The preprocessing stage: a split → padded subgraph shards + item graph + manifest.

From train only (nothing of valid/test enters): E⁽²⁾ and A₂, shortest-path labels
and strata, the item kNN graph. Chunked over users under a memory budget;
atomic writes; an interrupted run resumes from the parts already complete and
verified (see ``shards.py`` for the layout).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

import xplo_jax
from xplo_jax.config import PreprocessConfig, fingerprint
from xplo_jax.data.types import Split
from xplo_jax.errors import ShardError
from xplo_jax.fileio import atomic_path, atomic_write_json, sha256_file
from xplo_jax.preprocess import knn as knn_lib
from xplo_jax.preprocess import labels as labels_lib
from xplo_jax.preprocess.proximity import GraphOps, second_order_rows
from xplo_jax.preprocess.shards import (FORMAT, SubgraphData, open_shards, read_json, save_split, split_sha256,
                                        verify_part, write_part)

log = logging.getLogger(__name__)

__all__ = ["preprocess", "preprocess_fingerprint", "code_version", "compute_chunk", "prepare_cached"]

# Settings that change the layout or speed but not a single value of the output.
_LAYOUT_ONLY = ("memory_gb",)


def code_version() -> str:
  try:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(xplo_jax.__file__).parent,
                         capture_output=True, text=True, timeout=5).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    sha = ""
  return xplo_jax.__version__ + (f"+g{sha}" if sha else "")


def preprocess_fingerprint(split: Split, cfg: PreprocessConfig) -> str:
  """Hash of everything the output depends on: format, config, split content."""
  conf = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _LAYOUT_ONLY}
  return fingerprint({"format": FORMAT, "preprocess": conf, "split": split_sha256(split)})


def _roundup(x: int, m: int) -> int:
  return max(m, -(-int(x) // m) * m)


def compute_chunk(ops: GraphOps, start: int, stop: int, cfg: PreprocessConfig, reachable: np.ndarray):
  """A₁, A₂, labels for users [start, stop): (a1 list, a2 list, labels [n, |V|] uint8)."""
  rows = ops.rows(start, stop)
  a1 = rows.toarray() > 0
  e2 = ops.second_order(rows)
  reach3 = e2 > 0
  a2_lists = second_order_rows(e2, a1, cfg.threshold_mode, cfg.threshold, cfg.a2_cap)
  del e2
  a2 = np.zeros_like(a1)
  for r, ids in enumerate(a2_lists):
    a2[r, ids] = True
  reach5 = reach3.copy()
  # Only users whose distance-3 ball misses a reachable item can have items at distance 5.
  need = np.flatnonzero((~reach3 & reachable[None, :]).any(axis=1))
  if len(need):
    reach5[need] = ops.reach5(rows[need], reach3[need])
  labels = labels_lib.make_labels(a1, a2, reach3, reach5)
  a1_lists = [rows.indices[rows.indptr[r]:rows.indptr[r + 1]].astype(np.int32) for r in range(stop - start)]
  return a1_lists, a2_lists, labels


def _pad(lists: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
  ids = np.zeros((len(lists), width), np.int32)
  lens = np.zeros(len(lists), np.int32)
  for r, l in enumerate(lists):
    ids[r, :len(l)] = l
    lens[r] = len(l)
  return ids, lens


def _write_shard(folder: Path, ops: GraphOps, start: int, stop: int, cfg: PreprocessConfig,
                 reachable: np.ndarray, chunk: int, bar) -> dict:
  folder.mkdir(parents=True, exist_ok=True)
  n = stop - start
  a1_all, a2_all = [], []
  with atomic_path(folder / "labels.npy") as tmp:
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, ops.n_items))
    counts = np.zeros((n, labels_lib.NUM_LABELS), np.int32)
    for c0 in range(start, stop, chunk):
      c1 = min(stop, c0 + chunk)
      a1, a2, lab = compute_chunk(ops, c0, c1, cfg, reachable)
      mm[c0 - start:c1 - start] = lab
      counts[c0 - start:c1 - start] = labels_lib.label_counts(lab)
      a1_all += a1
      a2_all += a2
      bar.update(c1 - c0)
    mm.flush()
    del mm
  w1 = _roundup(max(len(x) for x in a1_all), cfg.width_multiple)
  w2 = _roundup(max([len(x) for x in a2_all] + [1]), cfg.width_multiple)
  a1_ids, a1_len = _pad(a1_all, w1)
  a2_ids, a2_len = _pad(a2_all, w2)
  arrays = {"a1_ids": a1_ids, "a1_len": a1_len, "a2_ids": a2_ids, "a2_len": a2_len,
            "label_counts": counts, "strata": labels_lib.strata_from_label_counts(counts)}
  return write_part(folder, arrays, {"user_start": start, "user_stop": stop, "width1": w1, "width2": w2},
                    precomputed={"labels.npy": sha256_file(folder / "labels.npy")})


def preprocess(split: Split, cfg: PreprocessConfig, out, *, overwrite: bool = False,
               progress: bool = True, extra: Optional[dict] = None, backend: str = "auto") -> SubgraphData:
  """Writes the shards of ``split`` into ``out`` (resuming what is complete there).

  Args:
    split: the train/valid/test split; only ``split.train`` enters the structures.
    cfg: thresholds, Kₙ, widths, shard size and memory budget.
    out: output folder.
    overwrite: replace an output folder written for another config.
    progress: show a progress bar.
    extra: more JSON-able facts to record in the manifest (e.g. the data config).
    backend: proximity backend ('auto', 'dense', 'sparse').

  Raises:
    ShardError: ``out`` holds the output of another config (and not ``overwrite``).
  """
  cfg.validate()
  out = Path(out)
  fp = preprocess_fingerprint(split, cfg)
  state_path = out / "state.json"
  if state_path.is_file():
    state = read_json(state_path)
    if state.get("fingerprint") != fp:
      if not overwrite:
        diff = _config_diff(state.get("config", {}), dataclasses.asdict(cfg))
        raise ShardError(f"{out}: holds preprocessing output of another config or split "
                         f"(fingerprint {state.get('fingerprint')} != {fp}; {diff}); use another --out, "
                         "or --overwrite to replace it")
      for sub in ("split", "graph", "shards", "manifest.json", "state.json"):
        p = out / sub
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif (out / "manifest.json").is_file():
      try:
        return open_shards(out, verify=True, expect_fingerprint=fp)
      except ShardError as e:
        log.warning("%s; recomputing the parts that fail their checks", e)
        (out / "manifest.json").unlink()
  elif (out / "manifest.json").is_file() and not overwrite:
    raise ShardError(f"{out}/manifest.json exists without state.json; use another --out or --overwrite")
  out.mkdir(parents=True, exist_ok=True)
  atomic_write_json(state_path, {"fingerprint": fp, "format": FORMAT, "config": dataclasses.asdict(cfg)})
  t_start = time.perf_counter()
  timing = {}

  if verify_part(out / "split") is None:
    save_split(out / "split", split)

  train = split.train.csr(split.n_users, split.n_items)
  budget = cfg.memory_gb * 2 ** 30
  t = time.perf_counter()
  ops = GraphOps(train, budget, backend=backend)
  timing["graph_ops_s"] = time.perf_counter() - t

  k_eff = knn_lib.clamp_knn(cfg.knn, split.n_items)
  graph_done = verify_part(out / "graph")
  if graph_done is None or graph_done.get("knn") != k_eff:
    t = time.perf_counter()
    ids, sim, cnt = knn_lib.item_knn(train, k_eff, memory_bytes=budget / 4,
                                     cooc=ops.C if ops.backend == "dense" else None)
    degree = np.asarray(train.sum(axis=0)).ravel().astype(np.int32)
    write_part(out / "graph", {"knn_ids": ids, "knn_sim": sim, "knn_count": cnt, "item_degree": degree},
               {"knn": k_eff, "knn_requested": cfg.knn})
    timing["knn_s"] = time.perf_counter() - t

  reachable = np.asarray(train.sum(axis=0)).ravel() > 0
  per_row = 24 * split.n_items
  chunk = int(np.clip((budget / 4) // per_row, 1, min(4096, cfg.shard_users)))
  bounds = [(s, min(split.n_users, s + cfg.shard_users)) for s in range(0, split.n_users, cfg.shard_users)]
  shard_entries = []
  t = time.perf_counter()
  with tqdm(total=split.n_users, unit="user", desc="preprocess", disable=not progress,
            dynamic_ncols=True) as bar:
    for i, (s, e) in enumerate(bounds):
      folder = out / "shards" / f"{i:05d}"
      done = verify_part(folder)
      if done is not None and (done.get("user_start"), done.get("user_stop")) == (s, e):
        bar.update(e - s)
      else:
        done = _write_shard(folder, ops, s, e, cfg, reachable, chunk, bar)
      shard_entries.append({"path": f"shards/{i:05d}", "user_start": s, "user_stop": e,
                            "width1": done["width1"], "width2": done["width2"]})
  timing["shards_s"] = time.perf_counter() - t
  timing["total_s"] = time.perf_counter() - t_start

  files = {}
  for part in ["split", "graph"] + [s["path"] for s in shard_entries]:
    done = read_json(out / part / "done.json")
    for fname, entry in done["files"].items():
      files[f"{part}/{fname}"] = entry
  manifest = {
      "format": FORMAT, "fingerprint": fp, "code_version": code_version(),
      "config": dataclasses.asdict(cfg), "extra": extra or {},
      "split_sha256": split_sha256(split), "split_stats": split.stats(),
      "n_users": split.n_users, "n_items": split.n_items, "orders": 2,
      "num_labels": labels_lib.NUM_LABELS, "num_strata": labels_lib.NUM_STRATA,
      "knn": k_eff, "knn_requested": cfg.knn, "proximity_backend": ops.backend,
      "width1": max(s["width1"] for s in shard_entries), "width2": max(s["width2"] for s in shard_entries),
      "shards": shard_entries, "files": files, "timing": timing,
  }
  atomic_write_json(out / "manifest.json", manifest)
  return open_shards(out, verify=False, expect_fingerprint=fp)


def _config_diff(old: dict, new: dict) -> str:
  keys = sorted(set(old) | set(new))
  diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
  return "changed: " + ", ".join(diffs) if diffs else "same preprocess config, different split"


def prepare_cached(cfg, cache_dir, *, progress: bool = True):
  """load → filter → split → preprocess for a full ``Config``, reusing ``cache_dir``.

  The shards live in ``cache_dir/<dataset>-<fingerprint>``: a verified copy is reused,
  an interrupted one resumed, so every command on the same data and settings
  shares one preprocessing.

  Returns:
    (split, SubgraphData).
  """
  from xplo_jax.data import dataset_name, load_split
  split = load_split(cfg.data)
  out = Path(cache_dir) / f"{dataset_name(cfg.data)}-{preprocess_fingerprint(split, cfg.preprocess)}"
  data = preprocess(split, cfg.preprocess, out, progress=progress, extra={"data": dataclasses.asdict(cfg.data)})
  return split, data
