"""MovieLens downloads: cache use, checksums, safe extraction, offline failure. No network."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import stat
import urllib.error
import urllib.request
import zipfile

import pytest

from xplo_jax.data import download, loaders
from xplo_jax.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any test that reaches urlopen without replacing it fails."""
  def refuse(*args, **kwargs):
    raise AssertionError("a test tried to use the network")
  monkeypatch.setattr(urllib.request, "urlopen", refuse)


class FakeResponse(io.BytesIO):
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def make_zip(members: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as zf:
    for name, data in members.items():
      zf.writestr(name, data)
  return buf.getvalue()


U_DATA = b"1\t2\t5\t881250949\n3\t2\t1\t881250950\n"


@pytest.fixture
def pinned_zip(monkeypatch):
  """A small ml-100k.zip, pinned in place of the real archive's checksums."""
  data = make_zip({"ml-100k/": b"", "ml-100k/u.data": U_DATA, "ml-100k/README": b"hi"})
  arch = dataclasses.replace(download.ARCHIVES["ml-100k"], size=len(data),
                             md5=hashlib.md5(data).hexdigest(),
                             sha256=hashlib.sha256(data).hexdigest())
  monkeypatch.setitem(download.ARCHIVES, "ml-100k", arch)
  return data


def serve(monkeypatch, data: bytes, calls: list | None = None):
  def fake_urlopen(request, timeout=None):
    if calls is not None:
      calls.append((request.full_url, timeout))
    return FakeResponse(data)
  monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)


def all_files(folder):
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------

def test_pinned_checksums_are_well_formed():
  for name, arch in download.ARCHIVES.items():
    assert arch.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
    assert len(arch.md5) == 32 and len(arch.sha256) == 64 and arch.size > 1_000_000
  assert download.ARCHIVES["ml-100k"].sha256.startswith("50d2a982")
  assert download.ARCHIVES["ml-10m"].folder == "ml-10M100K"


def test_default_cache_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("XPLO_JAX_CACHE", str(tmp_path / "c"))
  assert download.default_cache_dir() == tmp_path / "c"
  monkeypatch.delenv("XPLO_JAX_CACHE")
  assert download.default_cache_dir().parts[-2:] == (".cache", "xplo_jax")


def test_download_verify_extract(tmp_path, monkeypatch, pinned_zip):
  calls = []
  serve(monkeypatch, pinned_zip, calls)
  folder = download.ensure_movielens("ml-100k", tmp_path, timeout=7)
  assert folder == tmp_path / "ml-100k"
  assert calls == [("https://files.grouplens.org/datasets/movielens/ml-100k.zip", 7)]
  assert (folder / "u.data").read_bytes() == U_DATA
  assert (folder / download.MARKER).is_file()
  assert all_files(tmp_path) == ["ml-100k", "ml-100k/.xplo_jax_download.json", "ml-100k/README",
                                 "ml-100k/u.data"]  # no temporary file or folder left
  # the second call uses the cache: no network
  monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
  assert download.ensure_movielens("ml-100k", tmp_path) == folder
  assert loaders.read_ml100k(folder).user.tolist() == [1, 3]


def test_existing_cache_is_used_without_network(tmp_path, monkeypatch):
  (tmp_path / "ml-1m").mkdir()
  (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1::5::1\n")
  monkeypatch.setattr(urllib.request, "urlopen",
                      lambda *a, **k: (_ for _ in ()).throw(AssertionError("network used")))
  assert download.ensure_movielens("ml-1m", tmp_path) == tmp_path / "ml-1m"
  assert download.ensure_movielens("ml-1m", tmp_path, allow_download=False) == tmp_path / "ml-1m"


def test_cache_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("XPLO_JAX_CACHE", str(tmp_path))
  (tmp_path / "ml-10M100K").mkdir()
  (tmp_path / "ml-10M100K" / "ratings.dat").write_text("1::1::5::1\n")
  assert download.ensure_movielens("ml-10m", None) == tmp_path / "ml-10M100K"


def test_manual_zip_is_verified_and_extracted_offline(tmp_path, pinned_zip):
  (tmp_path / "ml-100k.zip").write_bytes(pinned_zip)
  folder = download.ensure_movielens("ml-100k", tmp_path, allow_download=False)
  assert (folder / "u.data").read_bytes() == U_DATA


@pytest.mark.parametrize("corrupt", ["content", "size", "too_long"])
def test_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, pinned_zip, corrupt):
  if corrupt == "content":
    bad = bytearray(pinned_zip)
    bad[len(bad) // 2] ^= 0xFF
    bad = bytes(bad)
  elif corrupt == "size":
    bad = pinned_zip[:-10]
  else:
    bad = pinned_zip + b"\0" * 10
  serve(monkeypatch, bad)
  cache = tmp_path / "cache"
  with pytest.raises(DataError) as e:
    download.ensure_movielens("ml-100k", cache)
  msg = str(e.value)
  if corrupt == "content":
    assert "md5" in msg and download.ARCHIVES["ml-100k"].md5 in msg
  else:
    assert "bytes" in msg
  assert all_files(cache) == []


def test_offline_failure_says_where_to_put_the_files(tmp_path, monkeypatch):
  def offline(request, timeout=None):
    raise urllib.error.URLError(OSError(-2, "Name or service not known"))
  monkeypatch.setattr(urllib.request, "urlopen", offline)
  with pytest.raises(DataError) as e:
    download.ensure_movielens("ml-1m", tmp_path)
  msg = str(e.value)
  assert "could not download ml-1m" in msg and "Name or service not known" in msg
  assert str(tmp_path / "ml-1m.zip") in msg
  assert str(tmp_path / "ml-1m" / "ratings.dat") in msg and "movies.dat" in msg
  assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
  assert all_files(tmp_path) == []


def test_timeout_is_an_offline_failure(tmp_path, monkeypatch):
  def slow(request, timeout=None):
    raise TimeoutError("timed out")
  monkeypatch.setattr(urllib.request, "urlopen", slow)
  with pytest.raises(DataError, match="could not download ml-10m.*ml-10M100K"):
    download.ensure_movielens("ml-10m", tmp_path, timeout=0.01)


def test_download_disabled(tmp_path):
  with pytest.raises(DataError) as e:
    download.ensure_movielens("ml-100k", tmp_path, allow_download=False)
  assert "data.download=false" in str(e.value) and str(tmp_path / "ml-100k" / "u.data") in str(e.value)


def test_unknown_dataset():
  with pytest.raises(ConfigError, match="ml-100k"):
    download.ensure_movielens("ml-25m", None)


# --------------------------------------------------------------------------------------
# Safe extraction.

def raw_zip(tmp_path, name, data=b"x", mode=None):
  path = tmp_path / "crafted.zip"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("ok/fine.txt", b"fine")
    info = zipfile.ZipInfo(name)
    if mode is not None:
      info.external_attr = mode << 16
    zf.writestr(info, data)
  return path


@pytest.mark.parametrize("name,why", [
  ("../evil", "'..'"),
  ("ok/../../evil", "'..'"),
  ("/abs/evil", "absolute"),
  ("C:/evil", "absolute"),
  ("..\\evil", "'..'"),
])
def test_extraction_rejects_escaping_paths(tmp_path, name, why):
  dest = tmp_path / "dest"
  dest.mkdir()
  with pytest.raises(DataError) as e:
    download.extract_zip_safely(raw_zip(tmp_path, name), dest)
  assert why in str(e.value) and "nothing was extracted" in str(e.value)
  assert all_files(dest) == []
  assert not (tmp_path / "evil").exists()


def test_extraction_rejects_symlinks(tmp_path):
  dest = tmp_path / "dest"
  dest.mkdir()
  with pytest.raises(DataError, match="symbolic link"):
    download.extract_zip_safely(raw_zip(tmp_path, "ok/link", b"/etc/passwd", stat.S_IFLNK | 0o777), dest)
  assert all_files(dest) == []


def test_extraction_rejects_oversized(tmp_path):
  dest = tmp_path / "dest"
  dest.mkdir()
  with pytest.raises(DataError, match="more than"):
    download.extract_zip_safely(raw_zip(tmp_path, "ok/big", b"0" * 1000), dest, max_bytes=500)


def test_extraction_of_a_good_zip(tmp_path):
  dest = tmp_path / "dest"
  dest.mkdir()
  written = download.extract_zip_safely(raw_zip(tmp_path, "ok/sub/b.txt", b"b", stat.S_IFREG | 0o644), dest)
  assert sorted(p.relative_to(dest).as_posix() for p in written) == ["ok/fine.txt", "ok/sub/b.txt"]
  assert (dest / "ok" / "sub" / "b.txt").read_bytes() == b"b"


def test_extraction_of_a_non_zip(tmp_path):
  path = tmp_path / "x.zip"
  path.write_bytes(b"not a zip")
  with pytest.raises(DataError, match="not a readable zip"):
    download.extract_zip_safely(path, tmp_path)


def test_unsafe_download_is_rejected_and_removed(tmp_path, monkeypatch):
  data = make_zip({"ml-100k/u.data": U_DATA, "../evil": b"x"})
  arch = dataclasses.replace(download.ARCHIVES["ml-100k"], size=len(data),
                             md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
  monkeypatch.setitem(download.ARCHIVES, "ml-100k", arch)
  serve(monkeypatch, data)
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match="unsafe archive member"):
    download.ensure_movielens("ml-100k", cache)
  assert all_files(cache) == [] and not (tmp_path / "evil").exists()
