"""Checksummed MovieLens downloads into a local cache.

``ensure_movielens('ml-1m', cache_dir)`` returns the folder of the extracted
archive, downloading it first when it is not in the cache. Nothing is fetched at
import time. A download goes to a temporary file, is checked against the pinned
size, MD5 and SHA-256 below, is extracted into a temporary folder (rejecting
absolute paths, ``..`` components, links and anything else that would land
outside it) and is renamed into place, so the cache never holds a partial or
unverified dataset. Offline, the error says where to put the files by hand.

Pinned checksums (``ARCHIVES``):

* ml-100k, ml-1m: size and SHA-256 from tensorflow-datasets'
  ``url_checksums/movielens.txt``; MD5 from GroupLens' ``<zip>.md5`` files as
  quoted by many public loaders.
* ml-10m: MD5 (GroupLens' ``ml-10m.zip.md5``) and size are quoted by many public
  loaders; the SHA-256 only by a few third-party projects (not by TFDS, which has
  no 10M config).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

from xplo_jax import __version__
from xplo_jax.errors import ConfigError, DataError

__all__ = ["Archive", "ARCHIVES", "default_cache_dir", "ensure_movielens", "extract_zip_safely",
           "verify_archive", "MARKER"]

logger = logging.getLogger(__name__)

#: Written into an extracted folder: where it came from and its checksums.
MARKER = ".xplo_jax_download.json"

_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Archive:
  """A pinned dataset archive.

  Attributes:
    name: the dataset name (``ml-100k``).
    url: where it is downloaded from.
    size: its size in bytes.
    md5, sha256: its hex digests.
    folder: the top folder inside the zip (and under the cache).
    required: files that must be in ``folder`` for the dataset to be usable.
    optional: files read when present (genres).
  """
  name: str
  url: str
  size: int
  md5: str
  sha256: str
  folder: str
  required: tuple[str, ...]
  optional: tuple[str, ...] = ()


_BASE = "https://files.grouplens.org/datasets/movielens"

ARCHIVES: dict[str, Archive] = {
  "ml-100k": Archive("ml-100k", f"{_BASE}/ml-100k.zip", 4_924_029,
                     "0e33842e24a9c977be4e0107933c0723",
                     "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                     "ml-100k", ("u.data",), ("u.item", "u.genre")),
  "ml-1m": Archive("ml-1m", f"{_BASE}/ml-1m.zip", 5_917_549,
                   "c4d9eecfca2ab87c1945afe126590906",
                   "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                   "ml-1m", ("ratings.dat",), ("movies.dat",)),
  "ml-10m": Archive("ml-10m", f"{_BASE}/ml-10m.zip", 65_566_137,
                    "ce571fd55effeba0271552578f2648bd",
                    "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
                    "ml-10M100K", ("ratings.dat",), ("movies.dat",)),
}


def default_cache_dir() -> Path:
  """``$XPLO_JAX_CACHE``, else ``~/.cache/xplo_jax``."""
  env = os.environ.get("XPLO_JAX_CACHE")
  return Path(env).expanduser() if env else Path.home() / ".cache" / "xplo_jax"


def _archive(name: str) -> Archive:
  if name not in ARCHIVES:
    raise ConfigError(f"no download is known for {name!r}; downloadable: {', '.join(ARCHIVES)}")
  return ARCHIVES[name]


def _complete(folder: Path, arch: Archive) -> bool:
  return folder.is_dir() and all((folder / f).is_file() for f in arch.required)


def _manual_hint(arch: Archive, cache: Path) -> str:
  files = ", ".join(arch.required + arch.optional)
  return (f"To install it by hand, fetch {arch.url} ({arch.size:,} bytes, md5 {arch.md5}) "
          f"elsewhere and either put the zip at {cache / (arch.name + '.zip')} (it is checked "
          f"and extracted on the next run), or extract it so that "
          f"{cache / arch.folder / arch.required[0]} exists (the archive's {arch.folder}/ folder "
          f"with {files}); or pass --data-dir with the folder holding {arch.required[0]}")


def ensure_movielens(name: str, cache_dir: Optional[str | os.PathLike] = None, *,
                     allow_download: bool = True, timeout: float = 30) -> Path:
  """Returns the extracted MovieLens folder, downloading and verifying it when needed.

  Order: an extracted folder already in the cache (``<cache>/ml-100k``,
  ``<cache>/ml-10M100K``, ...) is used as is; else a zip placed by hand at
  ``<cache>/<name>.zip`` is verified and extracted; else the archive is downloaded
  (when ``allow_download``).

  Args:
    name: ``ml-100k``, ``ml-1m`` or ``ml-10m``.
    cache_dir: the cache folder; None: ``default_cache_dir()``.
    allow_download: False: never touch the network.
    timeout: seconds to wait for the server before giving up (offline fails fast).

  Returns:
    The folder holding the dataset's files (e.g. ``<cache>/ml-1m/ratings.dat``).

  Raises:
    DataError: offline, disabled, checksum mismatch or unsafe archive; the message
      says where to put the files by hand.
  """
  arch = _archive(name)
  cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
  target = cache / arch.folder
  if _complete(target, arch):
    logger.debug("%s found in the cache at %s", name, target)
    return target
  manual_zip = cache / f"{arch.name}.zip"
  if manual_zip.is_file():
    logger.info("verifying %s", manual_zip)
    verify_archive(manual_zip, arch)
    return _install(manual_zip, arch, cache)
  if not allow_download:
    raise DataError(f"{name} is not in the cache and downloads are disabled (data.download=false). "
                    + _manual_hint(arch, cache), path=target)
  try:
    cache.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise DataError(f"cannot create the cache folder ({e.strerror}); set data.cache_dir or "
                    f"$XPLO_JAX_CACHE to a writable folder", path=cache) from None
  tmp = _download(arch, cache, timeout)
  try:
    verify_archive(tmp, arch)
    return _install(tmp, arch, cache)
  finally:
    tmp.unlink(missing_ok=True)


def _download(arch: Archive, cache: Path, timeout: float) -> Path:
  """Streams ``arch.url`` into a temporary file in ``cache``; returns its path."""
  fd, name = tempfile.mkstemp(prefix=f".{arch.name}.", suffix=".zip.part", dir=cache)
  tmp = Path(name)
  logger.info("downloading %s (%.1f MB) into %s", arch.url, arch.size / 1e6, cache)
  request = urllib.request.Request(arch.url, headers={"User-Agent": f"xplo_jax/{__version__}"})
  try:
    with os.fdopen(fd, "wb") as out:
      with urllib.request.urlopen(request, timeout=timeout) as response:
        total = 0
        while True:
          block = response.read(_BLOCK)
          if not block:
            break
          total += len(block)
          if total > arch.size:
            raise DataError(f"the server sent more than the expected {arch.size:,} bytes; "
                            f"not the pinned archive. " + _manual_hint(arch, cache), path=cache / arch.folder)
          out.write(block)
  except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError, ValueError) as e:
    tmp.unlink(missing_ok=True)
    if isinstance(e, DataError):
      raise
    reason = getattr(e, "reason", None) or e
    raise DataError(f"could not download {arch.name} ({type(e).__name__}: {reason}); are you "
                    f"offline? " + _manual_hint(arch, cache), path=cache / arch.folder) from None
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  return tmp


def verify_archive(path: str | os.PathLike, arch: Archive) -> None:
  """Checks the size, MD5 and SHA-256 of ``path`` against ``arch``.

  Raises:
    DataError: a mismatch, naming the expected and the found values.
  """
  path = Path(path)
  size = path.stat().st_size
  if size != arch.size:
    raise DataError(f"{arch.name} archive has {size:,} bytes, expected {arch.size:,} "
                    f"(a truncated or different file); delete it and retry", path=path)
  md5, sha = hashlib.md5(), hashlib.sha256()
  with open(path, "rb") as f:
    while True:
      block = f.read(_BLOCK)
      if not block:
        break
      md5.update(block)
      sha.update(block)
  for algo, got, want in (("md5", md5.hexdigest(), arch.md5),
                          ("sha256", sha.hexdigest(), arch.sha256)):
    if got != want:
      raise DataError(f"{arch.name} archive {algo} is {got}, expected {want} (a corrupted or "
                      f"different file); delete it and retry", path=path)


def _member_error(zip_path: Path, name: str, why: str) -> DataError:
  return DataError(f"unsafe archive member {name!r}: {why}; nothing was extracted", path=zip_path)


def extract_zip_safely(zip_path: str | os.PathLike, dest: str | os.PathLike, *,
                       max_bytes: int = 4 << 30) -> list[Path]:
  """Extracts a zip into ``dest`` after checking every member.

  Every member is checked before anything is written: absolute paths (``/x``,
  ``C:\\x``), ``..`` components, links, device files and any path that would
  resolve outside ``dest`` are rejected, as is a total uncompressed size above
  ``max_bytes``.

  Args:
    zip_path: the archive.
    dest: an existing folder.
    max_bytes: the largest total uncompressed size accepted.

  Returns:
    The extracted files.

  Raises:
    DataError: an unsafe member, an oversized or corrupted archive.
  """
  zip_path, dest = Path(zip_path), Path(dest)
  root = dest.resolve()
  try:
    zf = zipfile.ZipFile(zip_path)
  except (zipfile.BadZipFile, OSError) as e:
    raise DataError(f"not a readable zip archive ({e})", path=zip_path) from None
  with zf:
    plan = []
    total = 0
    for info in zf.infolist():
      name = info.filename
      norm = name.replace("\\", "/")
      if norm.startswith("/") or re.match(r"[A-Za-z]:", norm):
        raise _member_error(zip_path, name, "absolute path")
      parts = PurePosixPath(norm).parts
      if ".." in parts:
        raise _member_error(zip_path, name, "'..' component")
      mode = info.external_attr >> 16
      if stat.S_ISLNK(mode):
        raise _member_error(zip_path, name, "symbolic link")
      if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _member_error(zip_path, name, "not a regular file or folder")
      out = (dest / norm).resolve()
      if out != root and root not in out.parents:
        raise _member_error(zip_path, name, "outside the target folder")
      total += info.file_size
      if total > max_bytes:
        raise DataError(f"archive expands to more than {max_bytes:,} bytes; refusing it",
                        path=zip_path)
      plan.append((info, out, norm.endswith("/") or info.is_dir()))
    written = []
    try:
      for info, out, is_dir in plan:
        if is_dir:
          out.mkdir(parents=True, exist_ok=True)
          continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(out, "xb") as dst:
          shutil.copyfileobj(src, dst, _BLOCK)
        written.append(out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, FileExistsError) as e:
      raise DataError(f"cannot extract the archive ({type(e).__name__}: {e})", path=zip_path) from None
  return written


def _install(zip_path: Path, arch: Archive, cache: Path) -> Path:
  """Extracts a verified archive into a temporary folder, then renames it into place."""
  target = cache / arch.folder
  tmpdir = Path(tempfile.mkdtemp(prefix=f".{arch.name}.extract.", dir=cache))
  try:
    extract_zip_safely(zip_path, tmpdir)
    got = tmpdir / arch.folder
    if not _complete(got, arch):
      raise DataError(f"the archive has no {arch.folder}/{arch.required[0]}", path=zip_path)
    marker = {"url": arch.url, "size": arch.size, "md5": arch.md5, "sha256": arch.sha256,
              "extracted": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    (got / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    try:
      os.replace(got, target)
    except OSError:
      if _complete(target, arch):  # another process installed it meanwhile
        return target
      raise DataError(f"{target} exists but lacks {', '.join(arch.required)}; remove it (or "
                      f"complete it by hand) and retry", path=target) from None
  finally:
    shutil.rmtree(tmpdir, ignore_errors=True)
  logger.info("%s is ready at %s", arch.name, target)
  return target
