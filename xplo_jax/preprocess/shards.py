"""Shard files: layout, manifest, checksums, and the reader.

Layout of a preprocessing output folder::

  OUT/state.json                the config fingerprint, written first (resume guard)
  OUT/split/*.npy               train/valid/test pairs and original ids
  OUT/graph/*.npy               item kNN graph (ids, similarity, count) and item degrees
  OUT/shards/NNNNN/*.npy        one user range: padded A₁/A₂ ids + lengths, uint8 labels,
                                label counts, strata counts
  OUT/{split,graph,shards/NNNNN}/done.json   checksums of a completed part
  OUT/manifest.json             shapes, dtypes and sha256 of every file, the config,
                                the code version; written last

Every file is written atomically (temporary name, then rename), so an interrupted
run leaves only complete files; a part counts as complete when its ``done.json``
exists and every checksum in it verifies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from xplo_jax.data.types import ItemCategories, Pairs, Split
from xplo_jax.errors import ShardError
from xplo_jax.fileio import atomic_save_npy, atomic_write_json, load_npy, sha256_file

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "SHARD_ARRAYS", "write_part", "verify_part", "read_json", "SubgraphData",
           "open_shards", "save_split", "load_split_dir"]

FORMAT = "xplo_jax.shards/1"
SHARD_ARRAYS = ("a1_ids", "a1_len", "a2_ids", "a2_len", "labels", "label_counts", "strata")


def read_json(path: Path) -> dict:
  try:
    return json.loads(Path(path).read_text())
  except FileNotFoundError:
    raise
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ShardError(f"{path}: not valid JSON ({e}); the file is corrupted: delete it and rerun") from None


def _file_entry(path: Path, sha: str) -> dict:
  arr = load_npy(path, mmap=True)
  return {"sha256": sha, "shape": list(arr.shape), "dtype": str(arr.dtype), "bytes": path.stat().st_size}


def write_part(folder: Path, arrays: dict[str, np.ndarray], meta: Optional[dict] = None,
               precomputed: Optional[dict[str, str]] = None) -> dict:
  """Writes ``arrays`` as .npy files in ``folder`` then its ``done.json``; returns the entries.

  ``precomputed`` maps names of files already written in ``folder`` (e.g. through a
  memmap) to their sha256.
  """
  folder.mkdir(parents=True, exist_ok=True)
  files = {}
  for name, arr in arrays.items():
    sha = atomic_save_npy(folder / f"{name}.npy", arr)
    files[f"{name}.npy"] = _file_entry(folder / f"{name}.npy", sha)
  for fname, sha in (precomputed or {}).items():
    files[fname] = _file_entry(folder / fname, sha)
  done = {"files": files, **(meta or {})}
  atomic_write_json(folder / "done.json", done)
  return done


def verify_part(folder: Path, deep: bool = True) -> Optional[dict]:
  """The ``done.json`` of a complete, intact part; None when absent or failing its checks."""
  done_path = folder / "done.json"
  if not done_path.is_file():
    return None
  try:
    done = read_json(done_path)
  except ShardError as e:
    log.warning("%s", e)
    return None
  for fname, entry in done.get("files", {}).items():
    p = folder / fname
    if not p.is_file() or p.stat().st_size != entry["bytes"]:
      log.warning("%s: missing or wrong size; recomputing this part", p)
      return None
    if deep and sha256_file(p) != entry["sha256"]:
      log.warning("%s: sha256 mismatch; recomputing this part", p)
      return None
  return done


# ----------------------------------------------------------------------------- split

def save_split(folder: Path, split: Split) -> dict:
  arrays = {"train_user": split.train.user, "train_item": split.train.item,
            "valid_user": split.valid.user, "valid_item": split.valid.item,
            "test_user": split.test.user, "test_item": split.test.item,
            "user_ids": _id_array(split.user_ids), "item_ids": _id_array(split.item_ids)}
  meta = {"name": split.name, "n_users": split.n_users, "n_items": split.n_items}
  if split.categories is not None:
    arrays["category_item"] = split.categories.item
    arrays["category_id"] = split.categories.category
    meta["category_names"] = list(split.categories.names)
  return write_part(folder, arrays, meta)


def _id_array(ids: np.ndarray) -> np.ndarray:
  ids = np.asarray(ids)
  return ids if ids.dtype.kind in "iuU" else ids.astype(str)


def split_sha256(split: Split) -> str:
  """A content hash of the split (pairs and sizes), the input half of the fingerprint."""
  import hashlib
  h = hashlib.sha256()
  h.update(f"{split.n_users},{split.n_items}".encode())
  for p in (split.train, split.valid, split.test):
    for a in (p.user, p.item):
      h.update(np.ascontiguousarray(a, dtype=np.int32).tobytes())
      h.update(b"|")
  return h.hexdigest()


def load_split_dir(folder: Path) -> Split:
  done = read_json(folder / "done.json")
  a = {name[:-4]: load_npy(folder / name) for name in done["files"]}
  cats = None
  if "category_item" in a:
    cats = ItemCategories(a["category_item"], a["category_id"], tuple(done.get("category_names", ())))
  return Split(name=done["name"], train=Pairs(a["train_user"], a["train_item"]),
               valid=Pairs(a["valid_user"], a["valid_item"]), test=Pairs(a["test_user"], a["test_item"]),
               n_users=int(done["n_users"]), n_items=int(done["n_items"]), user_ids=a["user_ids"],
               item_ids=a["item_ids"], categories=cats)


# ----------------------------------------------------------------------------- reader

@dataclasses.dataclass
class SubgraphData:
  """The preprocessed inputs of training, with static shapes.

  Attributes:
    manifest: the parsed ``manifest.json``.
    split: the train/valid/test split the shards were computed from.
    knn_ids, knn_sim, knn_count, item_degree: the item graph ([|V|, Kₙ], [|V|, Kₙ], [|V|], [|V|]).
    n_users, n_items, width1, width2: sizes; id lists are padded to width1 / width2.
  """
  manifest: dict
  split: Split
  knn_ids: np.ndarray
  knn_sim: np.ndarray
  knn_count: np.ndarray
  item_degree: np.ndarray
  shards: list[dict]
  root: Path

  @property
  def n_users(self) -> int:
    return int(self.manifest["n_users"])

  @property
  def n_items(self) -> int:
    return int(self.manifest["n_items"])

  @property
  def width1(self) -> int:
    return int(self.manifest["width1"])

  @property
  def width2(self) -> int:
    return int(self.manifest["width2"])

  @property
  def fingerprint(self) -> str:
    return self.manifest["fingerprint"]

  def _shard_arrays(self, i: int) -> dict[str, np.ndarray]:
    cache = self.__dict__.setdefault("_cache", {})
    if i not in cache:
      folder = self.root / self.shards[i]["path"]
      cache[i] = {name: load_npy(folder / f"{name}.npy", mmap=True) for name in SHARD_ARRAYS}
    return cache[i]

  def batch(self, users: np.ndarray) -> dict[str, np.ndarray]:
    """Host arrays for ``users`` (any order), padded to the global widths.

    Returns a dict with a1_ids [B, width1] int32, a1_len [B] int32, a2_ids [B, width2],
    a2_len [B], labels [B, |V|] uint8, strata [B, 2, 4] int32.
    """
    users = np.asarray(users, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= self.n_users):
      raise IndexError(f"user index out of range [0, {self.n_users})")
    starts = np.array([s["user_start"] for s in self.shards])
    shard_of = np.searchsorted(starts, users, side="right") - 1
    out = {"a1_ids": np.zeros((len(users), self.width1), np.int32), "a1_len": np.zeros(len(users), np.int32),
           "a2_ids": np.zeros((len(users), self.width2), np.int32), "a2_len": np.zeros(len(users), np.int32),
           "labels": np.zeros((len(users), self.n_items), np.uint8),
           "strata": np.zeros((len(users), 2, 4), np.int32)}
    for i in np.unique(shard_of):
      sel = np.flatnonzero(shard_of == i)
      local = users[sel] - self.shards[i]["user_start"]
      a = self._shard_arrays(int(i))
      order = np.argsort(local, kind="stable")        # sorted reads are kind to memmaps
      rows, dst = local[order], sel[order]
      w1, w2 = a["a1_ids"].shape[1], a["a2_ids"].shape[1]
      out["a1_ids"][dst, :w1] = a["a1_ids"][rows]
      out["a2_ids"][dst, :w2] = a["a2_ids"][rows]
      for k in ("a1_len", "a2_len", "labels", "strata"):
        out[k][dst] = a[k][rows]
    return out

  def all_users(self) -> dict[str, np.ndarray]:
    """Every user's arrays in memory (``batch`` over all users)."""
    return self.batch(np.arange(self.n_users))


def open_shards(root, *, verify: bool = True, expect_fingerprint: Optional[str] = None) -> SubgraphData:
  """Opens a preprocessing output folder written by ``xplo_jax.preprocess``.

  Args:
    root: the folder holding ``manifest.json``.
    verify: recompute and compare the sha256 of every file.
    expect_fingerprint: when given, the manifest must have been written for it.

  Raises:
    ShardError: missing/incomplete manifest, a file that fails its checksum, or a
      manifest written for another config.
  """
  root = Path(root)
  mpath = root / "manifest.json"
  if not mpath.is_file():
    raise ShardError(f"{mpath}: not found; preprocessing did not finish here (run "
                     f"`python -m xplo_jax.preprocess --out {root} ...`; it resumes finished shards)")
  manifest = read_json(mpath)
  if manifest.get("format") != FORMAT:
    raise ShardError(f"{mpath}: format {manifest.get('format')!r}, expected {FORMAT!r}; rerun preprocessing")
  if expect_fingerprint is not None and manifest.get("fingerprint") != expect_fingerprint:
    raise ShardError(f"{mpath}: written for another config (fingerprint {manifest.get('fingerprint')}, "
                     f"expected {expect_fingerprint}); preprocess into another folder or with --overwrite")
  for rel, entry in manifest["files"].items():
    p = root / rel
    if not p.is_file():
      raise ShardError(f"{p}: listed in the manifest but missing; rerun preprocessing to recompute it")
    if p.stat().st_size != entry["bytes"] or (verify and sha256_file(p) != entry["sha256"]):
      raise ShardError(f"{p}: checksum mismatch with {mpath} (the file is corrupted or was changed "
                       "after preprocessing); rerun preprocessing: it recomputes only the bad parts")
  split = load_split_dir(root / "split")
  g = {n: load_npy(root / "graph" / f"{n}.npy") for n in ("knn_ids", "knn_sim", "knn_count", "item_degree")}
  return SubgraphData(manifest=manifest, split=split, shards=manifest["shards"], root=root, **g)
