"""Readers of the raw interaction files (DESIGN.md §1, first arrow).

Every reader returns a ``RawInteractions`` holding the file's rows as they are
(duplicates included, original ids kept) with ``source`` set to the file read;
binarization, k-core filtering and id remapping happen later.

Formats:

* MovieLens 100K ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``), genres
  from ``u.item`` / ``u.genre``;
* MovieLens 1M / 10M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``),
  genres from ``movies.dat``;
* MovieLens ``ratings.csv`` (ml-latest family), genres from ``movies.csv``;
* Netflix Prize ``combined_data_*.txt`` or ``training_set/mv_*.txt``;
* Alibaba / Taobao ``UserBehavior.csv`` (``user,item,category,behavior,timestamp``);
* any CSV/TSV table (``read_table``) and a folder of pre-split TSVs
  (``read_split_dir``).

Speed: files are read in blocks of ``CHUNK_BYTES`` complete lines, each parsed by
numpy's C ``loadtxt`` into typed columns (ML-10M's 10M lines take seconds). A
block the fast parser rejects sends the whole file to a line-by-line scan, which
either reads it (string ids, quoted fields, blank lines) or raises a ``DataError``
naming the file, the 1-based line, the field, the offending text and what was
expected. Memory is the output arrays plus one block.

Ids: int64 when every id of a column is an integer, else a numpy unicode array.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import io
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from xplo_jax.config import DataConfig
from xplo_jax.data.types import ItemCategories, RawInteractions
from xplo_jax.errors import ConfigError, DataError

__all__ = [
  "CHUNK_BYTES", "DATASET_DIR_NAMES", "ML100K_GENRES", "TAOBAO_BEHAVIORS",
  "resolve_data_dir", "load_raw", "read_ml100k", "read_ml_dat", "read_ml_csv",
  "read_netflix", "read_taobao", "read_table", "read_split_dir",
]

logger = logging.getLogger(__name__)

#: Bytes per block handed to the fast parser (a module constant so tests can shrink it).
CHUNK_BYTES = 64 << 20

#: Folder names a dataset usually has, in the order they are tried under ``--data-dir``.
DATASET_DIR_NAMES: dict[str, tuple[str, ...]] = {
  "ml-100k": ("ml-100k",),
  "ml-1m": ("ml-1m",),
  "ml-10m": ("ml-10m", "ml-10M100K"),
  "ml-latest": ("ml-latest", "ml-latest-small"),
  "netflix": ("netflix", "nf_prize_dataset", "netflix-prize"),
  "alibaba": ("alibaba", "taobao", "UserBehavior", "taobao-user-behavior-sample"),
}

#: MovieLens 100K genre names in ``u.item`` flag order (used when ``u.genre`` is absent).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                 "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                 "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

#: Taobao behavior names, in code order (``RawInteractions.behavior`` indexes this).
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")

_TFDS_NAMES = {"ml-100k": "movielens/100k-ratings", "ml-1m": "movielens/1m-ratings",
               "ml-latest": "movielens/latest-small-ratings"}

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_BOM = b"\xef\xbb\xbf"

# --------------------------------------------------------------------------------------
# Column specifications shared by the fast and the slow parser.

_KINDS = {"user": "id", "item": "id", "category": "id", "rating": "float",
          "timestamp": "int", "behavior": "behavior"}
_EXPECTED = {"id": "an id", "float": "a number",
             "int": "an integer (seconds since the epoch)", "behavior": "a behavior name"}


@dataclasses.dataclass(frozen=True)
class _Col:
  role: str   # user | item | rating | timestamp | category | behavior
  index: int  # 0-based field position

  @property
  def kind(self) -> str:
    return _KINDS[self.role]


@dataclasses.dataclass(frozen=True)
class _Format:
  """How the rows of one file are laid out.

  Attributes:
    sep: field separator ('\\t', ',', '::', ';', '|', ...) or None for runs of
      whitespace.
    cols: the fields read, by role.
    nfields: exact number of fields per line, or None: at least enough for
      ``cols`` (extra fields are ignored).
    describe: the line layout in words, for messages.
    quoted: fields may be double-quoted (CSV); the slow parser uses ``csv``.
    skip_lines: physical lines before the first row (a header).
    behaviors: behavior names, in code order, for a ``behavior`` column.
    force_str_ids: keep ids as text even when they are all integers.
  """
  sep: Optional[str]
  cols: tuple[_Col, ...]
  nfields: Optional[int]
  describe: str
  quoted: bool = False
  skip_lines: int = 0
  behaviors: tuple[str, ...] = ()
  force_str_ids: bool = False

  @property
  def min_fields(self) -> int:
    return self.nfields if self.nfields is not None else max(c.index for c in self.cols) + 1

  def sep_words(self) -> str:
    return {None: "whitespace", "\t": "tabs", ",": "commas", ";": "semicolons",
            "::": "'::'", "|": "'|'"}.get(self.sep, repr(self.sep))


def _clip(text: str, n: int = 120) -> str:
  text = text.rstrip("\r\n")
  return text if len(text) <= n else text[:n] + "..."


def _check_file(path: Path, what: str = "file") -> None:
  if not path.exists():
    raise DataError(f"{what} not found", path=path)
  if not path.is_file():
    raise DataError(f"expected a {what}, found a folder or special file", path=path)


# --------------------------------------------------------------------------------------
# Block reading and the fast parser.

def _iter_blocks(f, first_line: int) -> Iterator[tuple[bytes, int]]:
  """Yields (block of complete lines, 1-based number of its first line) from ``f``."""
  line = first_line
  rest = b""
  while True:
    data = f.read(CHUNK_BYTES)
    if not data:
      if rest:
        yield rest, line
      return
    if rest:
      data = rest + data
    cut = data.rfind(b"\n")
    if cut < 0:
      rest = data
      continue
    block, rest = data[:cut + 1], data[cut + 1:]
    yield block, line
    line += block.count(b"\n")


def _open_rows(path: Path, skip_lines: int):
  """Opens ``path`` in binary mode past a BOM and ``skip_lines`` lines; returns (f, next line no)."""
  f = open(path, "rb")
  if f.read(3) != _BOM:
    f.seek(0)
  for _ in range(skip_lines):
    f.readline()
  return f, skip_lines + 1


def _loadtxt(block: bytes, delimiter: Optional[str], dtype, usecols=None) -> Optional[np.ndarray]:
  """``np.loadtxt`` of a block into a structured array; None when it rejects the block."""
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    try:
      return np.loadtxt(io.BytesIO(block), delimiter=delimiter, dtype=dtype, usecols=usecols,
                        comments=None, ndmin=1, encoding="latin-1")
    except (ValueError, TypeError, OverflowError, Warning):
      return None


def _behavior_tokens(names: Sequence[str]) -> list[float]:
  # Non-integral stand-ins: they cannot be confused with an id or a timestamp, which
  # the fast parser reads as int64 (a token anywhere else makes the block fail).
  return [0.25 * (k + 1) + (0.125 if k >= 3 else 0.0) for k in range(len(names))]


def _fast_block(block: bytes, fmt: _Format) -> Optional[dict[str, np.ndarray]]:
  """Parses a block of complete lines; None when anything is irregular."""
  if not block.strip():
    return _empty_cols(fmt)
  if fmt.force_str_ids or (fmt.quoted and b'"' in block):
    return None
  delim = fmt.sep
  if delim is not None and len(delim) > 1:
    block = block.replace(delim.encode(), b"\t")
    delim = "\t"
  codes = None
  if fmt.behaviors:
    if delim is None:
      return None
    sep = delim.encode()
    tokens = _behavior_tokens(fmt.behaviors)
    block = block.rstrip(b"\r\n\t ") + b"\n"  # trailing blank lines are not rows
    n_lines = block.count(b"\n")
    found = 0
    for name, tok in zip(fmt.behaviors, tokens):
      old = sep + name.encode() + sep
      found += block.count(old)
      block = block.replace(old, sep + repr(tok).encode() + sep)
    if found != n_lines:  # a blank line, an unknown behavior, a misplaced token
      return None
    codes = tokens
  ordered = sorted(fmt.cols, key=lambda c: c.index)
  if fmt.nfields is not None:
    if [c.index for c in ordered] != list(range(fmt.nfields)):
      raise AssertionError("exact formats must read every field")  # a bug, not input
    usecols = None
  else:
    usecols = [c.index for c in ordered]
  dtype = [(c.role, _fast_dtype(c.kind)) for c in ordered]
  arr = _loadtxt(block, delim, dtype, usecols)
  if arr is None:
    return None
  out = {}
  for c in ordered:
    col = np.ascontiguousarray(arr[c.role])
    if c.kind == "float":
      if not np.isfinite(col).all():
        return None
      col = col.astype(np.float32)  # the dtype RawInteractions keeps
    if c.kind == "behavior":
      idx = np.searchsorted(np.asarray(codes), col)
      idx = np.minimum(idx, len(codes) - 1)
      if not np.array_equal(np.asarray(codes)[idx], col):
        return None
      col = idx.astype(np.uint8)
    out[c.role] = col
  return out


def _fast_dtype(kind: str):
  return {"id": np.int64, "int": np.int64, "float": np.float64, "behavior": np.float64}[kind]


def _empty_cols(fmt: _Format) -> dict[str, np.ndarray]:
  out_dtype = {"id": np.int64, "int": np.int64, "float": np.float32, "behavior": np.uint8}
  return {c.role: np.zeros(0, out_dtype[c.kind]) for c in fmt.cols}


# --------------------------------------------------------------------------------------
# The slow, line-by-line parser: exact error locations, string ids, quoting.

Rows = Iterator[tuple[int, list[str], str]]  # (1-based line number, fields, line text)


def _strip_bom(text: str) -> str:
  for bom in ("\ufeff", "\u00ef\u00bb\u00bf"):  # decoded as utf-8, or as latin-1
    if text.startswith(bom):
      return text[len(bom):]
  return text


def _split_fields(text: str, sep: Optional[str]) -> list[str]:
  return text.split() if sep is None else text.split(sep)


def _file_rows(path: Path, fmt: _Format, encoding: str) -> Rows:
  """The non-blank rows of a whole file (after ``fmt.skip_lines``)."""
  if fmt.quoted and fmt.sep is not None and len(fmt.sep) == 1:
    yield from _csv_rows(path, fmt, encoding)
    return
  with open(path, encoding=encoding, newline="\n") as f:  # lines end at '\n' only, as in blocks
    for lineno, line in enumerate(f, 1):
      if lineno <= fmt.skip_lines:
        continue
      text = line.rstrip("\r\n")
      if lineno == 1:
        text = _strip_bom(text)
      if text.strip():
        yield lineno, _split_fields(text, fmt.sep), text


def _csv_rows(path: Path, fmt: _Format, encoding: str) -> Rows:
  with open(path, encoding=encoding, newline="") as f:
    for _ in range(fmt.skip_lines):
      f.readline()
    reader = csv.reader(f, delimiter=fmt.sep, skipinitialspace=True, strict=True)
    while True:
      try:
        fields = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        raise DataError(f"cannot parse a CSV row ({e}); expected {fmt.describe}",
                        path=path, line=fmt.skip_lines + reader.line_num) from None
      lineno = fmt.skip_lines + reader.line_num
      if lineno == 1 and fields:
        fields[0] = _strip_bom(fields[0])
      if fields and any(x.strip() for x in fields):
        yield lineno, fields, fmt.sep.join(fields)


def _block_rows(block: bytes, first_line: int, fmt: _Format, encoding: str) -> Rows:
  """The non-blank rows of one block of complete, unquoted lines."""
  try:
    text = block.decode(encoding)
  except UnicodeDecodeError:
    text = block.decode("latin-1")
  for k, line in enumerate(text.split("\n")):
    line = line.rstrip("\r")
    if line.strip():
      yield first_line + k, _split_fields(line, fmt.sep), line


def _convert_rows(rows: Rows, fmt: _Format, path: Path) -> dict[str, np.ndarray]:
  """Checks and converts rows; raises a DataError at the first bad one."""
  lists: dict[str, list] = {c.role: [] for c in fmt.cols}
  behaviors = {name: k for k, name in enumerate(fmt.behaviors)}
  need = fmt.min_fields
  for lineno, fields, text in rows:
    n = len(fields)
    if (fmt.nfields is not None and n != fmt.nfields) or n < need:
      exp = (f"{fmt.nfields}" if fmt.nfields is not None else f"at least {need}")
      raise DataError(f"expected {exp} fields separated by {fmt.sep_words()} ({fmt.describe}), "
                      f"found {n}: {_clip(text)!r}", path=path, line=lineno)
    for c in fmt.cols:
      s = fields[c.index].strip()
      kind = c.kind
      if kind == "id":
        if not s:
          raise DataError(f"expected {_EXPECTED[kind]}, found an empty field in {_clip(text)!r}",
                          path=path, line=lineno, field=c.role)
        lists[c.role].append(s)
      elif kind == "float":
        try:
          v = float(s)
        except ValueError:
          v = math.nan
        if not math.isfinite(v):
          raise DataError(f"expected a number, got {s!r} in {_clip(text)!r}",
                          path=path, line=lineno, field=c.role)
        lists[c.role].append(v)
      elif kind == "int":
        if not _INT_RE.match(s):
          raise DataError(f"expected {_EXPECTED[kind]}, got {s!r} in {_clip(text)!r}",
                          path=path, line=lineno, field=c.role)
        lists[c.role].append(int(s))
      else:  # behavior
        code = behaviors.get(s)
        if code is None:
          raise DataError(f"unknown behavior {s!r} (expected one of {', '.join(fmt.behaviors)})",
                          path=path, line=lineno, field=c.role)
        lists[c.role].append(code)
  out = {}
  for c in fmt.cols:
    values = lists.pop(c.role)
    if c.kind == "id":
      out[c.role] = _ids_array(values, fmt.force_str_ids)
    elif c.kind == "float":
      out[c.role] = np.array(values, dtype=np.float32)
    elif c.kind == "int":
      try:
        out[c.role] = np.array(values, dtype=np.int64)
      except OverflowError:
        raise DataError("a timestamp does not fit in 64 bits", path=path, field=c.role) from None
    else:
      out[c.role] = np.array(values, dtype=np.uint8)
  return out


def _slow_read(path: Path, fmt: _Format, encoding: str = "utf-8") -> dict[str, np.ndarray]:
  """Reads a whole file line by line; raises a DataError at the first bad line."""
  enc = "utf-8-sig" if encoding == "utf-8" else encoding
  try:
    return _convert_rows(_file_rows(path, fmt, enc), fmt, path)
  except UnicodeDecodeError as e:
    logger.warning("%s is not valid %s (%s); reading it as latin-1", path, encoding, e.reason)
    return _convert_rows(_file_rows(path, fmt, "latin-1"), fmt, path)


def _ids_array(values: list[str], force_str: bool = False) -> np.ndarray:
  """int64 when every id is an integer (and fits), else a unicode array."""
  if not values:
    return np.zeros(0, np.int64)
  if not force_str and all(_INT_RE.match(s) for s in values):
    try:
      return np.array([int(s) for s in values], dtype=np.int64)
    except OverflowError:
      pass
  return np.array(values, dtype=str)


def _read_rows(path: Path, fmt: _Format, *, encoding: str = "utf-8") -> dict[str, np.ndarray]:
  """Reads every row of ``path``.

  Each block goes to the fast parser; a block it rejects is scanned line by line,
  which raises at a bad line (memory and time stay those of one block) or reads
  the block. Only when that scan finds text ids (or a block has quotes, whose
  fields may span lines) is the whole file read line by line, so every block's
  ids are kept as the same kind.
  """
  _check_file(path)
  if fmt.force_str_ids:
    return _slow_read(path, fmt, encoding)
  parts: dict[str, list[np.ndarray]] = {c.role: [] for c in fmt.cols}
  id_roles = [c.role for c in fmt.cols if c.kind == "id"]
  whole_file = False
  f, first = _open_rows(path, fmt.skip_lines)
  with f:
    for block, line in _iter_blocks(f, first):
      res = _fast_block(block, fmt)
      if res is None:
        if fmt.quoted and b'"' in block:
          whole_file = True
          break
        res = _convert_rows(_block_rows(block, line, fmt, encoding), fmt, path)
        if any(res[r].dtype.kind != "i" for r in id_roles):
          whole_file = True
          break
      for k, v in res.items():
        parts[k].append(v)
  if whole_file:
    del parts
    logger.info("%s: reading it line by line (quoted fields or non-integer ids)", path)
    return _slow_read(path, fmt, encoding)
  if not parts[fmt.cols[0].role]:
    return _empty_cols(fmt)
  return _concat_parts(parts)


def _concat_parts(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
  """Concatenates each column's blocks, freeing the blocks column by column."""
  out = {}
  for k in list(parts):
    blocks = parts.pop(k)
    out[k] = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
  return out


def _require_rows(cols: dict[str, np.ndarray], path: Path, what: str) -> int:
  n = len(next(iter(cols.values())))
  if n == 0:
    raise DataError(f"no rows: the file is empty or holds only a header; expected {what}",
                    path=path)
  return n


def _make_raw(cols: dict[str, np.ndarray], source: Path, *, categories=None, implicit=None,
              behavior_names: tuple[str, ...] = ()) -> RawInteractions:
  n = len(cols["user"])
  has_rating = "rating" in cols
  value = cols["rating"].astype(np.float32, copy=False) if has_rating else np.ones(n, np.float32)
  ts = (cols["timestamp"].astype(np.int64, copy=False) if "timestamp" in cols
        else np.full(n, -1, np.int64))
  return RawInteractions(
    user=cols["user"], item=cols["item"], value=value, timestamp=ts, source=str(source),
    implicit=(not has_rating) if implicit is None else implicit,
    behavior=cols.get("behavior"), behavior_names=behavior_names, categories=categories)


def _cats_from_pairs(items: list[int], names: list[str]) -> Optional[ItemCategories]:
  """ItemCategories from parallel lists of item ids and category names (sorted names)."""
  if not items:
    return None
  uniq = sorted(set(names))
  code = {name: k for k, name in enumerate(uniq)}
  return ItemCategories(item=np.array(items, dtype=np.int64),
                        category=np.array([code[n] for n in names], dtype=np.int32),
                        names=tuple(uniq))


def _read_text(path: Path, encoding: str) -> str:
  """Reads a small text file in ``encoding``, falling back to latin-1 (never fails to decode)."""
  data = path.read_bytes()
  if data.startswith(_BOM):
    data = data[3:]
  try:
    return data.decode(encoding)
  except UnicodeDecodeError:
    logger.info("%s is not valid %s; decoding it as latin-1", path, encoding)
    return data.decode("latin-1")


def _parse_int(s: str, path: Path, line: int, field: str, text: str) -> int:
  s = s.strip()
  if not _INT_RE.match(s):
    raise DataError(f"expected an integer id, got {s!r} in {_clip(text)!r}",
                    path=path, line=line, field=field)
  return int(s)


# --------------------------------------------------------------------------------------
# Locating a dataset's folder.

def _default_cache_dir() -> Path:
  from xplo_jax.data.download import default_cache_dir
  return default_cache_dir()


def _has_expected(folder: Path, expect: tuple[str, ...]) -> bool:
  for pattern in expect:
    if any(ch in pattern for ch in "*?["):
      if any(folder.glob(pattern)):
        return True
    elif (folder / pattern).exists():
      return True
  return False


def resolve_data_dir(dataset: str, data_dir: Optional[str | os.PathLike], *,
                     expect: tuple[str, ...], cache_dir: Optional[str | os.PathLike] = None
                     ) -> Path:
  """Finds the folder that holds a dataset's files.

  ``data_dir`` is either the dataset's own folder or a parent holding it under one
  of its usual names (``DATASET_DIR_NAMES``: ``ml-10m`` or ``ml-10M100K``, ...);
  a path to one of the expected files themselves names its folder. Without a
  ``data_dir`` the download cache (``cache_dir``, else ``$XPLO_JAX_CACHE`` or
  ``~/.cache/xplo_jax``) is searched.

  Args:
    dataset: a dataset name (``ml-100k``, ``netflix``, ...); unknown names are only
      looked for in ``data_dir`` itself and under their own name.
    data_dir: the folder given by the user, or None.
    expect: file or folder names (glob patterns allowed) of which the folder must
      hold at least one, e.g. ``('u.data',)``.
    cache_dir: the download cache searched when ``data_dir`` is None.

  Returns:
    The folder.

  Raises:
    DataError: not found; the message names every place looked at and the files
      expected there.
  """
  names = DATASET_DIR_NAMES.get(dataset, (dataset,))
  if data_dir is not None:
    base = Path(data_dir).expanduser()
    if base.is_file():
      if any(fnmatch.fnmatch(base.name, p) for p in expect):
        return base.parent
      raise DataError(f"expected a folder holding {' or '.join(expect)} for {dataset}, "
                      f"got a file", path=base)
    if not base.exists():
      raise DataError(f"data folder not found (expected a folder holding "
                      f"{' or '.join(expect)} for {dataset}, or its parent)", path=base)
    candidates = [base] + [base / n for n in names]
  else:
    base = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    candidates = [base / n for n in names]
  for folder in candidates:
    if folder.is_dir() and _has_expected(folder, expect):
      return folder
  looked = ", ".join(str(c) for c in candidates)
  hint = "" if data_dir is not None else " (pass --data-dir to point at your copy)"
  raise DataError(f"{dataset} not found: expected {' or '.join(expect)} in one of: {looked}{hint}",
                  path=base)


# --------------------------------------------------------------------------------------
# MovieLens.

_ML_RATING_COLS = (_Col("user", 0), _Col("item", 1), _Col("rating", 2), _Col("timestamp", 3))


def read_ml100k(folder: str | os.PathLike) -> RawInteractions:
  """Reads MovieLens 100K: ``u.data`` ratings and ``u.item`` genres.

  Args:
    folder: the folder holding ``u.data`` (and ``u.item``, ``u.genre``).

  Returns:
    RawInteractions with ratings 1..5 and genre categories (None without ``u.item``).
  """
  folder = Path(folder)
  path = folder / "u.data"
  fmt = _Format(sep="\t", cols=_ML_RATING_COLS, nfields=4,
                describe="user id, item id, rating, timestamp separated by tabs")
  cols = _read_rows(path, fmt)
  _require_rows(cols, path, "lines 'user<TAB>item<TAB>rating<TAB>timestamp'")
  return _make_raw(cols, path, categories=_read_u_item(folder), implicit=False)


def _read_u_item(folder: Path) -> Optional[ItemCategories]:
  path = folder / "u.item"
  if not path.is_file():
    logger.info("%s not found: MovieLens 100K items have no genres", path)
    return None
  names = list(ML100K_GENRES)
  gpath = folder / "u.genre"
  if gpath.is_file():
    listed = []
    for lineno, line in enumerate(_read_text(gpath, "latin-1").split("\n"), 1):
      line = line.strip()
      if not line:
        continue
      name, sep, idx = line.rpartition("|")
      if not sep or not _INT_RE.match(idx.strip()) or int(idx) != len(listed):
        raise DataError(f"expected 'name|{len(listed)}', got {_clip(line)!r}",
                        path=gpath, line=lineno)
      listed.append(name)
    if not listed:
      raise DataError("no genres: expected lines 'name|index'", path=gpath)
    names = listed
  g = len(names)
  items, genres = [], []
  n_rows = 0
  for lineno, line in enumerate(_read_text(path, "latin-1").split("\n"), 1):
    line = line.rstrip("\r")
    if not line.strip():
      continue
    fields = line.split("|")
    if len(fields) < g + 2:
      raise DataError(f"expected 'movie id|title|...|' followed by {g} genre flags, "
                      f"found {len(fields)} fields: {_clip(line)!r}", path=path, line=lineno)
    item = _parse_int(fields[0], path, lineno, "movie id", line)
    flags = fields[-g:]
    for k, flag in enumerate(flags):
      flag = flag.strip()
      if flag == "1":
        items.append(item)
        genres.append(names[k])
      elif flag != "0":
        raise DataError(f"expected a genre flag 0 or 1, got {flag!r}", path=path, line=lineno,
                        field=names[k])
    n_rows += 1
  if n_rows == 0:
    raise DataError("no rows: expected 'movie id|title|...' lines with genre flags", path=path)
  if not items:
    return None
  # u.genre's order (not alphabetical), so codes match the file's flag columns.
  code = {name: k for k, name in enumerate(names)}
  return ItemCategories(item=np.array(items, np.int64),
                        category=np.array([code[n] for n in genres], np.int32), names=tuple(names))


def read_ml_dat(folder: str | os.PathLike, *, encoding: str = "utf-8") -> RawInteractions:
  """Reads MovieLens 1M or 10M: ``ratings.dat`` and ``movies.dat`` genres.

  Args:
    folder: the folder holding ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``;
      10M ratings are half stars) and ``movies.dat`` (``MovieID::Title::Genres``).
    encoding: of ``movies.dat`` (1M is latin-1, 10M utf-8); invalid text falls back
      to latin-1.

  Returns:
    RawInteractions with genre categories (None without ``movies.dat``).
  """
  folder = Path(folder)
  path = folder / "ratings.dat"
  fmt = _Format(sep="::", cols=_ML_RATING_COLS, nfields=4, describe="UserID::MovieID::Rating::Timestamp")
  cols = _read_rows(path, fmt, encoding="latin-1")
  _require_rows(cols, path, "lines 'UserID::MovieID::Rating::Timestamp'")
  return _make_raw(cols, path, categories=_read_movies_dat(folder / "movies.dat", encoding),
                   implicit=False)


_NO_GENRES = "(no genres listed)"


def _read_movies_dat(path: Path, encoding: str) -> Optional[ItemCategories]:
  if not path.is_file():
    logger.info("%s not found: items have no genres", path)
    return None
  items, genres = [], []
  for lineno, line in enumerate(_read_text(path, encoding).split("\n"), 1):
    line = line.rstrip("\r")
    if not line.strip():
      continue
    head, sep1, rest = line.partition("::")
    _, sep2, genre_text = rest.rpartition("::")
    if not sep1 or not sep2:
      raise DataError(f"expected 'MovieID::Title::Genres', got {_clip(line)!r}",
                      path=path, line=lineno)
    item = _parse_int(head, path, lineno, "MovieID", line)
    for g in genre_text.strip().split("|"):
      g = g.strip()
      if g and g != _NO_GENRES:
        items.append(item)
        genres.append(g)
  return _cats_from_pairs(items, genres)


def read_ml_csv(folder: str | os.PathLike) -> RawInteractions:
  """Reads a MovieLens ``ratings.csv`` (ml-latest, ml-latest-small, ml-20m, ml-25m).

  Args:
    folder: the folder holding ``ratings.csv`` (header
      ``userId,movieId,rating,timestamp``) and ``movies.csv`` (``movieId,title,genres``).

  Returns:
    RawInteractions with genre categories (None without ``movies.csv``).
  """
  folder = Path(folder)
  path = folder / "ratings.csv"
  _check_file(path)
  expected = ["userId", "movieId", "rating", "timestamp"]
  header, header_no = _first_line(path)
  if header is None:
    raise DataError(f"empty file: expected the header {','.join(expected)} and rating rows",
                    path=path)
  fields = [x.strip().strip('"') for x in header.split(",")]
  if fields[:4] != expected:
    raise DataError(f"expected the header {','.join(expected)}, got {_clip(header)!r}",
                    path=path, line=header_no)
  fmt = _Format(sep=",", cols=_ML_RATING_COLS, nfields=None, skip_lines=header_no, quoted=True,
                describe="userId,movieId,rating,timestamp")
  cols = _read_rows(path, fmt)
  _require_rows(cols, path, "rows 'userId,movieId,rating,timestamp' after the header")
  return _make_raw(cols, path, categories=_read_movies_csv(folder / "movies.csv"), implicit=False)


def _read_movies_csv(path: Path) -> Optional[ItemCategories]:
  if not path.is_file():
    logger.info("%s not found: items have no genres", path)
    return None
  items, genres = [], []
  reader = csv.reader(io.StringIO(_read_text(path, "utf-8"), newline=""))
  header = next(reader, None)
  if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
    raise DataError(f"expected the header movieId,title,genres, got {header!r}", path=path, line=1)
  for row in reader:
    if not row:
      continue
    lineno = reader.line_num
    if len(row) < 3:
      raise DataError(f"expected movieId,title,genres, found {len(row)} fields: {row!r}",
                      path=path, line=lineno)
    item = _parse_int(row[0], path, lineno, "movieId", ",".join(row))
    for g in row[-1].split("|"):
      g = g.strip()
      if g and g != _NO_GENRES:
        items.append(item)
        genres.append(g)
  return _cats_from_pairs(items, genres)


# --------------------------------------------------------------------------------------
# Netflix Prize.

_NETFLIX_DESCRIBE = "'MovieID:' lines, each followed by 'CustomerID,Rating,YYYY-MM-DD' lines"
_NETFLIX_HEADER = re.compile(r"\s*([0-9]+)\s*:\s*\Z")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\Z")


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
  """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
  y = y - (m <= 2)
  era = np.floor_divide(y, 400)
  yoe = y - era * 400
  mp = (m + 9) % 12
  doy = (153 * mp + 2) // 5 + d - 1
  doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468


def _valid_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> bool:
  if not ((m >= 1) & (m <= 12) & (d >= 1)).all():
    return False
  leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
  dim = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m, 1, 12) - 1]
  dim = dim + (leap & (m == 2))
  return bool((d <= dim).all())


_NETFLIX_DTYPE = [("user", np.int64), ("rating", np.float64), ("y", np.int64), ("m", np.int64),
                  ("d", np.int64)]


def _netflix_segment(seg: bytes, movie: int, out: dict[str, list]) -> bool:
  if not seg.strip():
    return True
  arr = _loadtxt(seg.replace(b"-", b","), ",", _NETFLIX_DTYPE)
  if arr is None:
    return False
  y, m, d = arr["y"], arr["m"], arr["d"]
  if not np.isfinite(arr["rating"]).all() or not _valid_dates(y, m, d):
    return False
  out["user"].append(np.ascontiguousarray(arr["user"]))
  out["item"].append(np.full(len(arr), movie, np.int64))
  out["rating"].append(arr["rating"].astype(np.float32))
  out["timestamp"].append(_days_from_civil(y, m, d) * 86400)
  return True


def _netflix_block_fast(block: bytes, movie: Optional[int], out: dict[str, list]):
  """Parses a block into ``out``; returns (ok, the movie id in force at its end)."""
  pos = 0
  while True:
    c = block.find(b":", pos)
    if c < 0:
      break
    ls = block.rfind(b"\n", 0, c) + 1
    le = block.find(b"\n", c)
    le = len(block) if le < 0 else le
    head = block[ls:le].strip()
    if not head.endswith(b":") or not head[:-1].strip().isdigit():
      return False, movie
    if block[pos:ls].strip():
      if movie is None or not _netflix_segment(block[pos:ls], movie, out):
        return False, movie
    movie = int(head[:-1])
    pos = le + 1
  if block[pos:].strip():
    if movie is None or not _netflix_segment(block[pos:], movie, out):
      return False, movie
  return True, movie


def _netflix_block_slow(block: bytes, first_line: int, movie: Optional[int], path: Path,
                        out: dict[str, list]) -> Optional[int]:
  """Line-by-line parsing of a block; raises a DataError at the first bad line."""
  users, items, ratings, stamps = [], [], [], []
  for k, line in enumerate(block.decode("latin-1").split("\n")):
    lineno = first_line + k
    text = line.rstrip("\r")
    if not text.strip():
      continue
    m = _NETFLIX_HEADER.match(text)
    if m:
      movie = int(m.group(1))
      continue
    if movie is None:
      raise DataError(f"expected a 'MovieID:' line before the first rating row "
                      f"({_NETFLIX_DESCRIBE}), got {_clip(text)!r}", path=path, line=lineno)
    fields = text.split(",")
    if len(fields) != 3:
      raise DataError(f"expected 'CustomerID,Rating,YYYY-MM-DD' or 'MovieID:', found "
                      f"{len(fields)} fields: {_clip(text)!r}", path=path, line=lineno)
    users.append(_parse_int(fields[0], path, lineno, "CustomerID", text))
    try:
      r = float(fields[1])
    except ValueError:
      r = math.nan
    if not math.isfinite(r):
      raise DataError(f"expected a number, got {fields[1].strip()!r} in {_clip(text)!r}",
                      path=path, line=lineno, field="rating")
    ratings.append(r)
    dm = _DATE_RE.match(fields[2].strip())
    ymd = None if dm is None else [np.array([int(g)]) for g in dm.groups()]
    if ymd is None or not _valid_dates(*ymd):
      raise DataError(f"expected a date YYYY-MM-DD, got {fields[2].strip()!r} in {_clip(text)!r}",
                      path=path, line=lineno, field="date")
    stamps.append(int(_days_from_civil(*ymd)[0]) * 86400)
    items.append(movie)
  out["user"].append(np.array(users, np.int64))
  out["item"].append(np.array(items, np.int64))
  out["rating"].append(np.array(ratings, np.float32))
  out["timestamp"].append(np.array(stamps, np.int64))
  return movie


def _read_netflix_file(path: Path, out: dict[str, list]) -> None:
  _check_file(path)
  f, first = _open_rows(path, 0)
  with f:
    movie = None
    for block, line in _iter_blocks(f, first):
      local: dict[str, list] = {k: [] for k in out}
      ok, end_movie = _netflix_block_fast(block, movie, local)
      if not ok:
        local = {k: [] for k in out}
        end_movie = _netflix_block_slow(block, line, movie, path, local)
      for k, v in local.items():
        out[k].extend(v)
      movie = end_movie


def _natural_key(p: Path):
  return [int(t) if t.isdigit() else t for t in re.split(r"([0-9]+)", p.name)]


def read_netflix(folder: str | os.PathLike) -> RawInteractions:
  """Reads the Netflix Prize ratings.

  Accepts ``combined_data_*.txt`` (the Kaggle layout) or ``training_set/mv_*.txt``
  (the original layout: one file per movie) under ``folder``; when both are there,
  ``combined_data_*.txt`` is read (they hold the same ratings). ``probe.txt`` and
  ``qualifying.txt`` are not ratings and are ignored.

  Args:
    folder: the dataset folder.

  Returns:
    RawInteractions (ratings 1..5, timestamp = the date's midnight UTC, no categories).
  """
  folder = Path(folder)
  if not folder.is_dir():
    raise DataError("Netflix folder not found (expected combined_data_*.txt or "
                    "training_set/mv_*.txt inside)", path=folder)
  files = sorted(folder.glob("combined_data_*.txt"), key=_natural_key)
  if files and (folder / "training_set").is_dir():
    logger.info("%s: reading combined_data_*.txt; ignoring training_set/ (same ratings)", folder)
  if not files:
    files = sorted((folder / "training_set").glob("mv_*.txt"), key=_natural_key)
  if not files:
    raise DataError(f"no Netflix rating files: expected combined_data_1.txt ... "
                    f"combined_data_4.txt or training_set/mv_0000001.txt ... ({_NETFLIX_DESCRIBE})",
                    path=folder)
  logger.info("reading %d Netflix file(s) under %s", len(files), folder)
  out: dict[str, list] = {"user": [], "item": [], "rating": [], "timestamp": []}
  for path in files:
    _read_netflix_file(path, out)
  cols = _concat_parts(out)
  source = folder if len(files) > 1 else files[0]
  if len(cols["user"]) == 0:
    raise DataError(f"no rows: expected {_NETFLIX_DESCRIBE}", path=source)
  return _make_raw(cols, source, implicit=False)


# --------------------------------------------------------------------------------------
# Alibaba / Taobao user behavior.

def read_taobao(path: str | os.PathLike) -> RawInteractions:
  """Reads Taobao ``UserBehavior.csv`` (no header: ``user,item,category,behavior,timestamp``).

  Args:
    path: the CSV file, or a folder holding ``UserBehavior.csv``.

  Returns:
    Implicit RawInteractions (value 1.0) with ``behavior`` codes into
    ``TAOBAO_BEHAVIORS`` (pv, buy, cart, fav) and item categories (one per item:
    its first row's; names are the category ids as text).
  """
  path = Path(path)
  if path.is_dir():
    path = path / "UserBehavior.csv"
  cols_spec = (_Col("user", 0), _Col("item", 1), _Col("category", 2), _Col("behavior", 3),
               _Col("timestamp", 4))
  fmt = _Format(sep=",", cols=cols_spec, nfields=5, behaviors=TAOBAO_BEHAVIORS,
                describe="user_id,item_id,category_id,behavior,timestamp with behavior one of "
                         + "/".join(TAOBAO_BEHAVIORS))
  cols = _read_rows(path, fmt)
  n = _require_rows(cols, path, "rows 'user_id,item_id,category_id,behavior,timestamp'")
  items, first = np.unique(cols["item"], return_index=True)
  cat_of_item = cols.pop("category")[first]
  names, codes = np.unique(cat_of_item, return_inverse=True)
  cats = ItemCategories(item=items, category=codes.astype(np.int32),
                        names=tuple(str(x) for x in names.tolist()))
  counts = np.bincount(cols["behavior"], minlength=len(TAOBAO_BEHAVIORS))
  logger.info("%s: %d rows (%s)", path, n,
              ", ".join(f"{b} {c}" for b, c in zip(TAOBAO_BEHAVIORS, counts.tolist())))
  return RawInteractions(user=cols["user"], item=cols["item"], value=np.ones(n, np.float32),
                         timestamp=cols["timestamp"].astype(np.int64, copy=False), source=str(path),
                         implicit=True, behavior=cols["behavior"].astype(np.uint8, copy=False),
                         behavior_names=TAOBAO_BEHAVIORS, categories=cats)


# --------------------------------------------------------------------------------------
# Generic CSV / TSV.

_ROLES = ("user", "item", "rating", "timestamp")
_ALIASES = {
  "user": ("user", "userid", "uid", "customerid", "customer", "visitorid", "reviewerid"),
  "item": ("item", "itemid", "iid", "movieid", "movie", "productid", "product", "asin",
           "trackid", "bookid", "artistid"),
  "rating": ("rating", "ratings", "score", "value", "stars", "userrating", "overall"),
  "timestamp": ("timestamp", "time", "ts", "unixtime", "unixtimestamp", "unixreviewtime"),
}
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
              "space": None, "whitespace": None, "ws": None}


def _norm_name(name: str) -> str:
  return re.sub(r"[\s_\-.]", "", name.strip().strip('"').lower())


def _first_line(path: Path) -> tuple[Optional[str], int]:
  """The first non-blank line (BOM and line end stripped) and its number; (None, 0) if none."""
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, 1):
      if lineno == 1 and raw.startswith(_BOM):
        raw = raw[3:]
      text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
      if text.strip():
        return text, lineno
  return None, 0


def _parse_sep(sep: str) -> Optional[str]:
  """A user's data.sep: a separator, an escape (\\t) or a name (tab, comma, whitespace, ...)."""
  if sep == "":
    raise ConfigError("data.sep: expected a separator, got an empty string")
  if sep.isspace() and sep != "\t":
    return None
  key = sep.strip().lower()
  if key in _SEP_NAMES:
    return _SEP_NAMES[key]
  return sep.replace("\\t", "\t")


def _sniff_sep(line: str) -> Optional[str]:
  for sep in ("::", "\t", ",", ";", "|"):
    if sep in line:
      return sep
  return None  # whitespace (or a single field, which is an error later)


def _split_line(line: str, sep: Optional[str]) -> list[str]:
  if sep is None:
    return line.split()
  if len(sep) == 1:
    return next(csv.reader([line], delimiter=sep, skipinitialspace=True), [])
  return line.split(sep)


def _parse_columns(columns: str) -> list[tuple[str, str]]:
  """'user,item,rating' / '0,1,2' / 'item=movie,user=uid' → [(role, name or index)]."""
  out: list[tuple[str, str]] = []
  entries = [e.strip() for e in columns.split(",") if e.strip()]
  for k, e in enumerate(entries):
    if "=" in e:
      role, _, ref = (x.strip() for x in e.partition("="))
      if role not in _ROLES:
        raise ConfigError(f"data.columns: unknown role {role!r} in {e!r} "
                          f"(roles: {', '.join(_ROLES)})")
    else:
      if k >= len(_ROLES):
        raise ConfigError(f"data.columns: at most {len(_ROLES)} columns "
                          f"({', '.join(_ROLES)}), got {columns!r}")
      role, ref = _ROLES[k], e
    if role in dict(out):
      raise ConfigError(f"data.columns: {role} is given twice in {columns!r}")
    out.append((role, ref))
  roles = dict(out)
  if "user" not in roles or "item" not in roles:
    raise ConfigError(f"data.columns: expected at least a user and an item column, got {columns!r}")
  return out


def read_table(path: str | os.PathLike, columns: Optional[str] = None, sep: Optional[str] = None,
               header: str = "auto") -> RawInteractions:
  """Reads any CSV/TSV of interactions.

  Args:
    path: the file.
    columns: which fields hold user, item[, rating][, timestamp], in that order
      (or as ``role=field`` entries): header names (``userId,movieId,rating``), or
      0-based positions (``0,1,2``). None: a header's fields named user/item
      (/rating/timestamp) or a common alias (userId, user_id, movieId, item_id,
      itemId, rating, timestamp, ...); without a header, the fields by position
      (2 fields: user,item; 3: +rating; 4: +timestamp).
    sep: the separator (``,``, ``\\t`` or ``tab``, ``;``, ``::``, ``|``,
      ``whitespace``); None: sniffed from the first line (``::``, tab, comma,
      semicolon, pipe, else whitespace).
    header: ``auto`` (a header when ``columns`` names fields, or when the first
      line holds a known column name), ``yes`` or ``no``.

  Returns:
    RawInteractions; implicit (value 1.0) when there is no rating column, timestamp
    -1 when there is no timestamp column.
  """
  path = Path(path)
  _check_file(path)
  if header not in ("auto", "yes", "no"):
    raise ConfigError(f"data.header: expected auto, yes or no, got {header!r}")
  first, first_no = _first_line(path)
  if first is None:
    raise DataError("empty file: expected rows of user, item[, rating][, timestamp]", path=path)
  if sep is not None:
    sep = _parse_sep(sep)
  else:
    sep = _sniff_sep(first)
  fields = _split_line(first, sep)
  names = [f.strip().strip('"') for f in fields]
  refs = _parse_columns(columns) if columns is not None else None
  by_name = refs is not None and any(not ref.isdigit() for _, ref in refs)

  if header == "yes":
    has_header = True
  elif header == "no":
    if by_name:
      raise ConfigError(f"data.columns {columns!r} names header fields but data.header=no; "
                        f"give 0-based positions instead")
    has_header = False
  else:
    known = {a for aliases in _ALIASES.values() for a in aliases}
    has_header = by_name or any(_norm_name(n) in known for n in names)

  roles: dict[str, int] = {}
  if refs is not None:
    for role, ref in refs:
      if ref.isdigit():
        roles[role] = int(ref)
        continue
      if ref in names:
        roles[role] = names.index(ref)
        continue
      low = [n.lower() for n in names]
      if ref.lower() in low:
        roles[role] = low.index(ref.lower())
        continue
      raise DataError(f"header has no field {ref!r} (the {role} column of data.columns); "
                      f"its fields: {', '.join(names)}", path=path, line=first_no, field=role)
  elif has_header:
    normed = [_norm_name(n) for n in names]
    for role in _ROLES:
      for alias in _ALIASES[role]:
        if alias in normed:
          roles[role] = normed.index(alias)
          break
    missing = [r for r in ("user", "item") if r not in roles]
    if missing:
      raise DataError(f"header has no {' and no '.join(missing)} column (expected a field named "
                      f"{' or '.join(_ALIASES[missing[0]][:4])}, ...); its fields: "
                      f"{', '.join(names)}; pass data.columns=user_field,item_field[,rating_field]",
                      path=path, line=first_no)
  else:
    n = len(fields)
    if n < 2:
      raise DataError(f"expected at least 2 fields (user, item) per line, found {n} in "
                      f"{_clip(first)!r}; set data.sep if the separator is not one of "
                      f"'::', tab, comma, semicolon, pipe, whitespace", path=path, line=first_no)
    if n > 4:
      raise DataError(f"cannot tell which of the {n} fields hold the rating and timestamp; "
                      f"pass data.columns (e.g. 0,1,2,3 for user,item,rating,timestamp)",
                      path=path, line=first_no)
    roles = {role: k for k, role in enumerate(_ROLES[:n])}
  idx = list(roles.values())
  if len(set(idx)) != len(idx):
    raise ConfigError(f"data.columns: two roles use the same field ({roles})")
  cols = tuple(_Col(role, k) for role, k in roles.items())
  describe = ", ".join(f"{role} in field {k + 1}" for role, k in roles.items())
  fmt = _Format(sep=sep, cols=cols, nfields=None, quoted=sep is not None and len(sep) == 1,
                skip_lines=first_no if has_header else first_no - 1, describe=describe)
  try:
    data = _read_rows(path, fmt)
  except DataError as e:
    if not has_header and header == "auto" and e.line == first_no:
      raise DataError(f"{e.reason} (if line {first_no} is a header, pass data.header=yes and "
                      f"data.columns)", path=e.path, line=e.line, field=e.field) from None
    raise
  _require_rows(data, path, "rows of " + describe)
  return _make_raw(data, path)


# --------------------------------------------------------------------------------------
# A pre-split folder.

def read_split_dir(path: str | os.PathLike) -> dict[str, RawInteractions]:
  """Reads a bring-your-own split: ``train.tsv``, ``valid.tsv``, ``test.tsv``.

  Each file starts with the header ``user_id<TAB>item_id`` (fields after those two
  are allowed and ignored); every row is a positive. ``valid.tsv`` may hold only
  the header (no validation set); ``train.tsv`` and ``test.tsv`` need rows. When
  any file has a non-integer id, the ids of all three are kept as text so they
  stay comparable.

  Args:
    path: the folder.

  Returns:
    {'train', 'valid', 'test'} → implicit RawInteractions.
  """
  folder = Path(path)
  if not folder.is_dir():
    raise DataError("split folder not found (expected train.tsv, valid.tsv, test.tsv inside)",
                    path=folder)
  paths = {name: folder / f"{name}.tsv" for name in ("train", "valid", "test")}
  missing = [str(p) for p in paths.values() if not p.is_file()]
  if missing:
    raise DataError(f"missing {', '.join(missing)} (a split folder holds train.tsv, valid.tsv "
                    f"and test.tsv, each with the header user_id<TAB>item_id)", path=folder)
  for name, p in paths.items():
    _check_split_header(p)
  cols = (_Col("user", 0), _Col("item", 1))

  def read_all(force_str: bool) -> dict[str, dict[str, np.ndarray]]:
    fmt = _Format(sep="\t", cols=cols, nfields=None, skip_lines=1, force_str_ids=force_str,
                  describe="user_id<TAB>item_id[<TAB>...]")
    return {name: _read_rows(p, fmt) for name, p in paths.items()}

  data = read_all(False)
  if any(d[r].dtype.kind == "U" for d in data.values() for r in ("user", "item")):
    data = read_all(True)
  out = {}
  for name, d in data.items():
    if len(d["user"]) == 0:
      if name == "valid":
        logger.warning("%s holds no rows: the split has no validation set", paths[name])
      else:
        raise DataError("no rows after the header: expected user_id<TAB>item_id rows",
                        path=paths[name])
    out[name] = _make_raw(d, paths[name], implicit=True)
  return out


def _check_split_header(path: Path) -> None:
  with open(path, "rb") as f:
    raw = f.readline()
  if raw.startswith(_BOM):
    raw = raw[3:]
  text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
  if not text.strip():
    raise DataError("empty file: expected the header user_id<TAB>item_id and then rows",
                    path=path, line=1)
  fields = text.split("\t")
  if [x.strip() for x in fields[:2]] != ["user_id", "item_id"]:
    raise DataError(f"expected the header user_id<TAB>item_id (tab-separated), got {_clip(text)!r}",
                    path=path, line=1)


# --------------------------------------------------------------------------------------
# Dispatch.

def _table_file(cfg: DataConfig) -> Path:
  if cfg.data_dir is None:
    raise DataError("the csv dataset needs --data-dir (data.data_dir) pointing at the CSV/TSV file")
  p = Path(cfg.data_dir).expanduser()
  if p.is_dir():
    found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in
                   (".csv", ".tsv", ".txt", ".dat"))
    if len(found) != 1:
      raise DataError(f"expected the path of a CSV/TSV file, or a folder holding exactly one "
                      f"(.csv/.tsv/.txt/.dat); found {len(found)}", path=p)
    return found[0]
  _check_file(p)
  return p


def _movielens_dir(cfg: DataConfig, expect: tuple[str, ...]) -> Path:
  from xplo_jax.data import download  # the download code is only needed here
  try:
    return resolve_data_dir(cfg.dataset, cfg.data_dir, expect=expect, cache_dir=cfg.cache_dir)
  except DataError as err:
    if cfg.data_dir is not None and cfg.download:
      logger.warning("%s; using the download cache instead", err)
    try:
      return download.ensure_movielens(cfg.dataset, cfg.cache_dir, allow_download=cfg.download)
    except DataError as err2:
      if cfg.data_dir is None:
        raise
      raise DataError(f"{err}; and {err2}") from None


def load_raw(cfg: DataConfig) -> RawInteractions:
  """Loads ``cfg.dataset`` as RawInteractions.

  MovieLens 100K/1M/10M are downloaded (checksummed) into the cache when they are
  not found and ``cfg.download`` is true. ``cfg.source == 'tfds'`` reads MovieLens
  through tensorflow-datasets instead (``xplo_jax.data.tfds_source``).

  Args:
    cfg: the data section of the config (dataset, data_dir, columns, sep, header,
      download, cache_dir, source).

  Returns:
    The raw rows.

  Raises:
    DataError: missing, empty or malformed input.
    ConfigError: a dataset this function does not load (``synthetic``, ``split-dir``).
  """
  ds = cfg.dataset
  if cfg.source == "tfds":
    if ds not in _TFDS_NAMES:
      raise ConfigError(f"data.source=tfds serves {', '.join(_TFDS_NAMES)}; not {ds!r}")
    from xplo_jax.data import tfds_source
    return tfds_source.load_tfds(_TFDS_NAMES[ds], cfg.data_dir)
  if ds == "ml-100k":
    return read_ml100k(_movielens_dir(cfg, ("u.data",)))
  if ds == "ml-1m":
    return read_ml_dat(_movielens_dir(cfg, ("ratings.dat",)), encoding="latin-1")
  if ds == "ml-10m":
    return read_ml_dat(_movielens_dir(cfg, ("ratings.dat",)), encoding="utf-8")
  if ds == "ml-latest":
    return read_ml_csv(resolve_data_dir(ds, cfg.data_dir, expect=("ratings.csv",),
                                        cache_dir=cfg.cache_dir))
  if ds == "netflix":
    return read_netflix(resolve_data_dir(ds, cfg.data_dir,
                                         expect=("combined_data_*.txt", "training_set"),
                                         cache_dir=cfg.cache_dir))
  if ds == "alibaba":
    if cfg.data_dir is not None and Path(cfg.data_dir).expanduser().is_file():
      return read_taobao(Path(cfg.data_dir).expanduser())
    folder = resolve_data_dir(ds, cfg.data_dir, expect=("UserBehavior.csv",),
                              cache_dir=cfg.cache_dir)
    return read_taobao(folder / "UserBehavior.csv")
  if ds == "csv":
    return read_table(_table_file(cfg), cfg.columns, cfg.sep, cfg.header)
  raise ConfigError(f"load_raw reads files of {', '.join(list(DATASET_DIR_NAMES) + ['csv'])}; "
                    f"{ds!r} is loaded elsewhere (synthetic data and split folders)")
