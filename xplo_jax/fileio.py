"""Atomic, checksummed file writes.

Nothing a run writes is ever left half-written: every file is written under a
temporary name in the same folder, flushed, fsynced and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_save_npy", "sha256_file", "load_npy"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary path next to ``path``; renames it onto ``path`` on success."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  tmp = Path(tmp)
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def atomic_write_bytes(path, data: bytes) -> str:
  """Writes ``data`` atomically; returns its sha256 hex digest."""
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)
  return hashlib.sha256(data).hexdigest()


def atomic_write_text(path, text: str) -> str:
  return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj: Any) -> str:
  return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  if isinstance(o, Path):
    return str(o)
  if isinstance(o, (set, frozenset)):
    return sorted(o)
  raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_save_npy(path, array: np.ndarray) -> str:
  """Saves ``array`` as .npy (never pickled) atomically; returns the file's sha256."""
  array = np.asarray(array)
  if array.dtype == object:
    raise TypeError(f"{path}: refusing to save an object array (it would need pickle)")
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, array, allow_pickle=False)
  return sha256_file(path)


def sha256_file(path, chunk: int = 1 << 22) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while True:
      block = f.read(chunk)
      if not block:
        break
      h.update(block)
  return h.hexdigest()


def load_npy(path, mmap: bool = False) -> np.ndarray:
  """Loads a .npy written by ``atomic_save_npy`` (pickle disabled)."""
  return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
