"""MovieLens through tensorflow-datasets (the optional ``tfds`` extra).

``load_tfds('movielens/1m-ratings', data_dir)`` reads a TFDS MovieLens ratings
config with ``tfds.data_source`` (random access over ArrayRecord files: no
TensorFlow needed) into the same ``RawInteractions`` the file loaders return.
tensorflow-datasets is imported only inside ``load_tfds``; without it the call
raises ``TfdsUnavailableError`` saying what to install.

Preparing a config the first time downloads it from GroupLens (TFDS pins the
checksums); offline, only an already prepared ``data_dir`` works. Records are
read one batch at a time through Python, so the 25M config takes minutes: the
file loaders (``xplo_jax.data.loaders``) are much faster on the same data.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import numpy as np

from xplo_jax.data.types import ItemCategories, RawInteractions
from xplo_jax.errors import DataError, XploError

__all__ = ["TfdsUnavailableError", "load_tfds", "TFDS_CONFIGS"]

logger = logging.getLogger(__name__)

#: The MovieLens ratings configs of tensorflow-datasets.
TFDS_CONFIGS = ("100k-ratings", "1m-ratings", "20m-ratings", "25m-ratings", "latest-small-ratings")

_INSTALL = "pip install 'xplo_jax[tfds]'"
_BATCH = 4096


class TfdsUnavailableError(XploError, ImportError):
  """tensorflow-datasets (the optional ``tfds`` extra) is not installed."""


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
    # The MovieLens builder is registered only once its module is imported.
    import tensorflow_datasets.structured.movielens  # noqa: F401
  except ImportError as e:
    raise TfdsUnavailableError(
      f"data.source=tfds needs tensorflow-datasets, the optional tfds extra: {_INSTALL} "
      f"(import failed: {e})") from None
  return tfds


def _full_name(name: str) -> str:
  short = name[len("movielens/"):] if name.startswith("movielens/") else name
  if short not in TFDS_CONFIGS:
    raise DataError(f"unknown TFDS MovieLens config {name!r}; expected one of "
                    f"{', '.join('movielens/' + c for c in TFDS_CONFIGS)}", field="name")
  return "movielens/" + short


def _text(value: Any) -> str:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray):
    return _text(value.item())
  return str(value)


def _ids(values: list[str]) -> np.ndarray:
  if values and all(v.isascii() and v.lstrip("+-").isdigit() for v in values):
    try:
      return np.array([int(v) for v in values], dtype=np.int64)
    except OverflowError:
      pass
  return np.array(values, dtype=str) if values else np.zeros(0, np.int64)


def _records(source, n: int):
  """Yields the n records of ``source`` in batches (one by one where batching fails)."""
  batched = hasattr(source, "__getitems__")
  for start in range(0, n, _BATCH):
    keys = list(range(start, min(n, start + _BATCH)))
    if batched:
      try:
        yield from source.__getitems__(keys)
        continue
      except (TypeError, NotImplementedError):
        batched = False
    for k in keys:
      yield source[k]


def load_tfds(name: str, data_dir: Optional[str | os.PathLike] = None, *,
              download: bool = True) -> RawInteractions:
  """Reads a TFDS MovieLens ratings config as RawInteractions.

  Args:
    name: ``movielens/100k-ratings``, ``movielens/1m-ratings``,
      ``movielens/latest-small-ratings``, ``movielens/20m-ratings`` or
      ``movielens/25m-ratings`` (the ``movielens/`` prefix may be left out).
    data_dir: the TFDS data folder; None: TFDS's default (``~/tensorflow_datasets``).
    download: prepare the config when it is not in ``data_dir`` (needs the network).

  Returns:
    Explicit RawInteractions (ratings, timestamps, original string ids converted to
    int64 when all are integers) with genre categories.

  Raises:
    TfdsUnavailableError: tensorflow-datasets is not installed.
    DataError: the config is unknown, cannot be prepared, or is empty.
  """
  full = _full_name(name)
  tfds = _import_tfds()
  try:
    source = tfds.data_source(full, split="train", data_dir=data_dir, download=download)
  except Exception as e:  # TFDS raises many types (DatasetNotFoundError, NotImplementedError, OSError)
    where = data_dir if data_dir is not None else "TFDS's default data_dir"
    raise DataError(f"tensorflow-datasets could not open {full} in {where} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); preparing it "
                    f"needs the network the first time (download={download}); or use the file "
                    f"loaders with --data-dir", path=data_dir) from None
  n = len(source)
  if n == 0:
    raise DataError(f"{full} has no ratings", path=data_dir)
  logger.info("reading %d ratings of %s through tensorflow-datasets", n, full)
  users, items = [], []
  ratings = np.empty(n, np.float32)
  stamps = np.empty(n, np.int64)
  genres_of: dict[str, np.ndarray] = {}
  for k, rec in enumerate(_records(source, n)):
    u, i = _text(rec["user_id"]), _text(rec["movie_id"])
    users.append(u)
    items.append(i)
    ratings[k] = float(np.asarray(rec["user_rating"]))
    stamps[k] = int(np.asarray(rec["timestamp"]))
    if i not in genres_of and "movie_genres" in rec:
      genres_of[i] = np.asarray(rec["movie_genres"]).reshape(-1)
  item_ids = _ids(items)
  categories = _categories(source, genres_of, as_int=item_ids.dtype.kind == "i")
  return RawInteractions(user=_ids(users), item=item_ids, value=ratings, timestamp=stamps,
                         source=f"tfds:{full}" + (f" ({data_dir})" if data_dir else ""),
                         implicit=False, categories=categories)


def _categories(source, genres_of: dict[str, np.ndarray], as_int: bool) -> Optional[ItemCategories]:
  try:
    names = tuple(source.dataset_info.features["movie_genres"].feature.names)
  except (AttributeError, KeyError, TypeError):
    return None
  skip = {k for k, g in enumerate(names) if g == "(no genres listed)"}
  item_text, codes = [], []
  for item, gs in genres_of.items():
    for g in dict.fromkeys(int(x) for x in gs):  # unique, in order
      if 0 <= g < len(names) and g not in skip:
        item_text.append(item)
        codes.append(g)
  if not codes:
    return None
  item = (np.array([int(t) for t in item_text], np.int64) if as_int
          else np.array(item_text, dtype=str))
  return ItemCategories(item=item, category=np.array(codes, np.int32), names=names)
