"""Loaders: real files (skipped when ../shared/data is absent) and handwritten fixtures."""

from __future__ import annotations

import calendar
import importlib.util
import sys

import numpy as np
import pytest

from xplo_jax.config import DataConfig
from xplo_jax.data import download, loaders, tfds_source
from xplo_jax.errors import ConfigError, DataError, XploError


def write(path, text, encoding="utf-8"):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
  return path


def midnight(y, m, d):
  return calendar.timegm((y, m, d, 0, 0, 0))


@pytest.fixture
def small_chunks(monkeypatch):
  """Blocks of a few lines, so block boundaries are crossed."""
  monkeypatch.setattr(loaders, "CHUNK_BYTES", 24)


@pytest.fixture(params=["default", "tiny"])
def chunking(request, monkeypatch):
  if request.param == "tiny":
    monkeypatch.setattr(loaders, "CHUNK_BYTES", 17)
  return request.param


# --------------------------------------------------------------------------------------
# Real data.

def test_ml100k_real(ml100k_dir):
  raw = loaders.read_ml100k(ml100k_dir)
  assert len(raw) == 100_000
  assert len(np.unique(raw.user)) == 943
  assert len(np.unique(raw.item)) == 1682
  assert raw.user.dtype == np.int64 and raw.item.dtype == np.int64
  assert raw.value.dtype == np.float32 and raw.timestamp.dtype == np.int64
  assert set(np.unique(raw.value).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
  assert (raw.timestamp > 800_000_000).all()
  assert not raw.implicit and raw.behavior is None
  assert raw.source.endswith("u.data")
  cats = raw.categories
  assert cats is not None and len(cats.names) == 19
  assert cats.names[0] == "unknown" and cats.names[-1] == "Western"
  assert set(np.unique(cats.item)) <= set(np.unique(raw.item))
  # Toy Story (1995) is Animation|Children's|Comedy in u.item.
  toy = sorted(cats.names[c] for c in cats.category[cats.item == 1])
  assert toy == ["Animation", "Children's", "Comedy"]
  # the first line of u.data
  assert (raw.user[0], raw.item[0], raw.value[0], raw.timestamp[0]) == (196, 242, 3.0, 881250949)


def test_ml100k_real_through_load_raw_with_parent_dir(shared_data, ml100k_dir):
  raw = loaders.load_raw(DataConfig(dataset="ml-100k", data_dir=str(shared_data), download=False))
  assert len(raw) == 100_000
  assert loaders.resolve_data_dir("ml-100k", str(shared_data), expect=("u.data",)) == ml100k_dir


def test_taobao_real(taobao_csv):
  raw = loaders.read_taobao(taobao_csv)
  assert len(raw) == 4321
  assert len(np.unique(raw.user)) == 43
  assert raw.implicit and (raw.value == 1.0).all()
  assert raw.behavior_names == ("pv", "buy", "cart", "fav")
  counts = dict(zip(raw.behavior_names, np.bincount(raw.behavior, minlength=4).tolist()))
  assert counts == {"pv": 3926, "buy": 77, "cart": 190, "fav": 128}
  assert (raw.user[0], raw.item[0], raw.behavior[0], raw.timestamp[0]) == (1, 2268318, 0, 1511544070)
  cats = raw.categories
  assert len(cats.item) == len(np.unique(raw.item)) and len(np.unique(cats.item)) == len(cats.item)
  k = np.searchsorted(cats.item, 2268318)
  assert cats.names[cats.category[k]] == "2520377"


def test_taobao_real_through_load_raw(shared_data, taobao_csv):
  raw = loaders.load_raw(DataConfig(dataset="alibaba", data_dir=str(shared_data)))
  assert len(raw) == 4321 and raw.source == str(taobao_csv)


# --------------------------------------------------------------------------------------
# MovieLens 100K.

U_ITEM = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
          "3|Caf\xe9 (1995)|01-Jan-1995||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n")


def make_ml100k(d, data="10\t1\t4\t881250949\n11\t2\t5\t891717742\n10\t1\t4\t881250949\n"):
  write(d / "u.data", data)
  write(d / "u.item", U_ITEM, "latin-1")
  write(d / "u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(loaders.ML100K_GENRES)) + "\n")
  return d


def test_ml100k_fixture_exact(tmp_path, chunking):
  raw = loaders.read_ml100k(make_ml100k(tmp_path))
  assert raw.user.tolist() == [10, 11, 10]  # the duplicate row is kept
  assert raw.item.tolist() == [1, 2, 1]
  assert raw.value.tolist() == [4.0, 5.0, 4.0]
  assert raw.timestamp.tolist() == [881250949, 891717742, 881250949]
  assert raw.source == str(tmp_path / "u.data")
  cats = raw.categories
  pairs = sorted((int(i), cats.names[c]) for i, c in zip(cats.item, cats.category))
  assert pairs == [(1, "Animation"), (1, "Children's"), (1, "Comedy"), (2, "Action"),
                   (2, "Adventure"), (2, "Thriller"), (3, "unknown")]
  assert cats.category.dtype == np.int32


def test_ml100k_without_genre_and_item_files(tmp_path):
  make_ml100k(tmp_path)
  (tmp_path / "u.genre").unlink()
  assert loaders.read_ml100k(tmp_path).categories.names == loaders.ML100K_GENRES
  (tmp_path / "u.item").unlink()
  assert loaders.read_ml100k(tmp_path).categories is None


def test_ml100k_crlf_and_bom(tmp_path):
  write(tmp_path / "u.data", b"\xef\xbb\xbf1\t2\t3\t4\r\n5\t6\t1\t8\r\n")
  raw = loaders.read_ml100k(tmp_path)
  assert raw.user.tolist() == [1, 5] and raw.timestamp.tolist() == [4, 8]


def test_ml100k_bad_genre_flag(tmp_path):
  make_ml100k(tmp_path)
  write(tmp_path / "u.item", U_ITEM.replace("|1|1|1|", "|1|x|1|"), "latin-1")
  with pytest.raises(DataError) as e:
    loaders.read_ml100k(tmp_path)
  assert e.value.line == 1 and "0 or 1" in str(e.value) and e.value.field == "Children's"


# --------------------------------------------------------------------------------------
# MovieLens 1M / 10M.

def test_ml1m_fixture(tmp_path, chunking):
  write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
  write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Cr\xe8me (1999)::(no genres listed)\n", "latin-1")
  raw = loaders.read_ml_dat(tmp_path, encoding="latin-1")
  assert raw.user.tolist() == [1, 1, 2]
  assert raw.item.tolist() == [1193, 661, 1193]
  assert raw.value.tolist() == [5.0, 3.0, 4.0]
  assert raw.timestamp.tolist() == [978300760, 978302109, 978298413]
  cats = raw.categories
  assert cats.names == ("Animation", "Children's", "Drama", "Musical")
  assert sorted((int(i), cats.names[c]) for i, c in zip(cats.item, cats.category)) == [
    (661, "Animation"), (661, "Children's"), (661, "Musical"), (1193, "Drama")]


def test_ml10m_half_stars_utf8_movies(tmp_path):
  write(tmp_path / "ratings.dat", "1::122::5::838985046\n1::185::3.5::838983525\n7::122::0.5::1\n")
  write(tmp_path / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Am\u00e9lie (2001)::Comedy\n")
  raw = loaders.read_ml_dat(tmp_path)
  assert raw.value.tolist() == [5.0, 3.5, 0.5]
  assert raw.categories.names == ("Comedy", "Romance")
  assert len(raw.categories.item) == 3


def test_ml_dat_malformed_line(tmp_path, chunking):
  write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::2::3::978302109\n2::3::4\n2::4::4::1\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_dat(tmp_path)
  err = e.value
  assert err.line == 3 and err.path == str(tmp_path / "ratings.dat")
  assert "expected 4 fields" in str(err) and "UserID::MovieID::Rating::Timestamp" in str(err)
  assert "2::3::4" in str(err)


def test_ml_dat_non_numeric_rating(tmp_path, chunking):
  write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::2::3::978302109\n2::3::four::1\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_dat(tmp_path)
  assert e.value.line == 3 and e.value.field == "rating"
  assert "expected a number" in str(e.value) and "'four'" in str(e.value)
  assert "ratings.dat:3: field 'rating'" in str(e.value)


@pytest.mark.parametrize("bad", ["nan", "inf", ""])
def test_ml_dat_rating_not_finite_or_empty(tmp_path, bad):
  write(tmp_path / "ratings.dat", f"1::1::5::978300760\n2::3::{bad}::1\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_dat(tmp_path)
  assert e.value.line == 2 and e.value.field == "rating"


@pytest.mark.parametrize("bad", ["yesterday", "97830.5"])
def test_ml_dat_non_numeric_timestamp(tmp_path, bad):
  write(tmp_path / "ratings.dat", f"1::1::5::978300760\n1::2::3::978302109\n2::3::4::{bad}\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_dat(tmp_path)
  assert e.value.line == 3 and e.value.field == "timestamp"
  assert "integer" in str(e.value)


def test_error_line_number_after_many_blocks(tmp_path, small_chunks):
  lines = [f"{u}::{u + 1}::4::{1000 + u}" for u in range(1, 200)]
  lines[150] = "151::152::4::x"
  write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_dat(tmp_path)
  assert e.value.line == 151 and e.value.field == "timestamp"


def test_blocks_give_the_same_rows(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  u, i = rng.integers(1, 10**6, 500), rng.integers(1, 10**9, 500)
  r, t = rng.integers(1, 11, 500) / 2, rng.integers(0, 2**40, 500)
  write(tmp_path / "ratings.dat", "".join(f"{a}::{b}::{c:g}::{d}\n" for a, b, c, d in zip(u, i, r, t)))
  whole = loaders.read_ml_dat(tmp_path)
  monkeypatch.setattr(loaders, "CHUNK_BYTES", 100)
  parts = loaders.read_ml_dat(tmp_path)
  for a in (whole, parts):
    assert a.user.tolist() == u.tolist() and a.item.tolist() == i.tolist()
    assert a.value.tolist() == r.tolist() and a.timestamp.tolist() == t.tolist()


def test_big_integer_ids_are_exact(tmp_path):
  big = 2**53 + 1  # not representable in float64
  write(tmp_path / "ratings.dat", f"{big}::{big + 2}::5::1\n")
  raw = loaders.read_ml_dat(tmp_path)
  assert raw.user.tolist() == [big] and raw.item.tolist() == [big + 2]


def test_blank_lines_are_skipped(tmp_path, chunking):
  write(tmp_path / "ratings.dat", "1::2::3::4\n\n5::6::1::8\n  \t\n7::8::2::9\n\n\n")
  raw = loaders.read_ml_dat(tmp_path)
  assert raw.user.tolist() == [1, 5, 7] and raw.timestamp.tolist() == [4, 8, 9]


# --------------------------------------------------------------------------------------
# MovieLens ratings.csv.

def test_ml_csv_fixture(tmp_path, chunking):
  write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
        "1,3,4.5,964981247\n2,3,0.5,1\n")
  write(tmp_path / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Comedy\n'
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        '4,"Nothing, ""quoted"" (1999)",(no genres listed)\n')
  raw = loaders.read_ml_csv(tmp_path)
  assert raw.user.tolist() == [1, 1, 2] and raw.item.tolist() == [1, 3, 3]
  assert raw.value.tolist() == [4.0, 4.5, 0.5] and raw.timestamp.tolist() == [964982703, 964981247, 1]
  cats = raw.categories
  assert cats.names == ("Adventure", "Comedy", "Drama", "Romance")
  assert sorted((int(i), cats.names[c]) for i, c in zip(cats.item, cats.category)) == [
    (1, "Adventure"), (1, "Comedy"), (3, "Comedy"), (3, "Drama"), (3, "Romance")]


def test_ml_csv_wrong_header(tmp_path):
  write(tmp_path / "ratings.csv", "user,movie,rating,timestamp\n1,1,4.0,964982703\n")
  with pytest.raises(DataError) as e:
    loaders.read_ml_csv(tmp_path)
  assert e.value.line == 1 and "userId,movieId,rating,timestamp" in str(e.value)


def test_ml_csv_header_only(tmp_path):
  write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
  with pytest.raises(DataError, match="no rows"):
    loaders.read_ml_csv(tmp_path)


# --------------------------------------------------------------------------------------
# Netflix Prize.

COMBINED_1 = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n2059652,4,2005-09-05\n"
COMBINED_2 = "3:\n1488844,1,2004-02-29\n"


def netflix_expected():
  return dict(user=[1488844, 822109, 2059652, 1488844], item=[1, 1, 2, 3],
              value=[3.0, 5.0, 4.0, 1.0],
              timestamp=[midnight(2005, 9, 6), midnight(2005, 5, 13), midnight(2005, 9, 5),
                         midnight(2004, 2, 29)])


def check_netflix(raw):
  exp = netflix_expected()
  assert raw.user.tolist() == exp["user"] and raw.item.tolist() == exp["item"]
  assert raw.value.tolist() == exp["value"] and raw.timestamp.tolist() == exp["timestamp"]
  assert raw.categories is None and not raw.implicit


def test_netflix_combined(tmp_path, chunking):
  write(tmp_path / "combined_data_1.txt", COMBINED_1)
  write(tmp_path / "combined_data_2.txt", COMBINED_2)
  write(tmp_path / "probe.txt", "1:\n30878\n")  # not ratings: ignored
  check_netflix(loaders.read_netflix(tmp_path))


def test_netflix_training_set_layout(tmp_path, chunking):
  write(tmp_path / "training_set" / "mv_0000001.txt", "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n")
  write(tmp_path / "training_set" / "mv_0000002.txt", "2:\r\n2059652,4,2005-09-05\r\n")
  write(tmp_path / "training_set" / "mv_0000003.txt", "3:\n1488844,1,2004-02-29")
  check_netflix(loaders.read_netflix(tmp_path))


def test_netflix_through_load_raw(tmp_path):
  write(tmp_path / "nf_prize_dataset" / "combined_data_1.txt", COMBINED_1 + COMBINED_2)
  check_netflix(loaders.load_raw(DataConfig(dataset="netflix", data_dir=str(tmp_path))))


def test_netflix_dates_match_the_calendar(tmp_path):
  dates = [(1970, 1, 1), (1999, 12, 31), (2000, 2, 29), (2100, 3, 1), (1969, 12, 31)]
  write(tmp_path / "combined_data_1.txt",
        "7:\n" + "".join(f"1,1,{y:04d}-{m:02d}-{d:02d}\n" for y, m, d in dates))
  raw = loaders.read_netflix(tmp_path)
  assert raw.timestamp.tolist() == [midnight(*x) for x in dates]


@pytest.mark.parametrize("text,line,field,needle", [
  ("1488844,3,2005-09-06\n1:\n", 1, None, "'MovieID:' line before"),
  ("1:\n1488844,3,2005-02-30\n", 2, "date", "YYYY-MM-DD"),
  ("1:\n1,3,2005-01-01\n1488844,x,2005-09-06\n", 3, "rating", "expected a number"),
  ("1:\n1488844,3\n", 2, None, "found 2 fields"),
  ("1:\nabc,3,2005-09-06\n", 2, "CustomerID", "integer"),
  ("x:\n1,3,2005-09-06\n", 1, None, "'MovieID:'"),
])
def test_netflix_errors(tmp_path, chunking, text, line, field, needle):
  write(tmp_path / "combined_data_1.txt", text)
  with pytest.raises(DataError) as e:
    loaders.read_netflix(tmp_path)
  assert e.value.line == line and e.value.field == field and needle in str(e.value)
  assert e.value.path == str(tmp_path / "combined_data_1.txt")


def test_netflix_missing_files(tmp_path):
  with pytest.raises(DataError, match="combined_data_1.txt"):
    loaders.read_netflix(tmp_path)


# --------------------------------------------------------------------------------------
# Taobao.

TAOBAO = "1,10,100,pv,1511544070\n1,11,100,buy,1511544071\n2,10,100,cart,1511544072\n2,12,200,fav,5\n"


def test_taobao_fixture(tmp_path, chunking):
  raw = loaders.read_taobao(write(tmp_path / "UserBehavior.csv", TAOBAO + "\n"))
  assert raw.user.tolist() == [1, 1, 2, 2] and raw.item.tolist() == [10, 11, 10, 12]
  assert raw.behavior.dtype == np.uint8 and raw.behavior.tolist() == [0, 1, 2, 3]
  assert raw.timestamp.tolist() == [1511544070, 1511544071, 1511544072, 5]
  assert raw.implicit and raw.value.tolist() == [1.0] * 4
  cats = raw.categories
  assert cats.item.tolist() == [10, 11, 12] and cats.names == ("100", "200")
  assert cats.category.tolist() == [0, 0, 1]


def test_taobao_unknown_behavior(tmp_path, chunking):
  path = write(tmp_path / "UserBehavior.csv", TAOBAO + "3,13,300,click,7\n")
  with pytest.raises(DataError) as e:
    loaders.read_taobao(path)
  assert e.value.line == 5 and e.value.field == "behavior"
  assert "'click'" in str(e.value) and "pv, buy, cart, fav" in str(e.value)


def test_taobao_a_code_in_the_behavior_column_is_not_a_behavior(tmp_path):
  # a number where the behavior name belongs must not pass as one of the stand-in codes
  path = write(tmp_path / "UserBehavior.csv", "1,10,100,pv,1\n1,11,100,0.25,2\n")
  with pytest.raises(DataError) as e:
    loaders.read_taobao(path)
  assert e.value.line == 2 and e.value.field == "behavior"


def test_taobao_wrong_field_count(tmp_path):
  path = write(tmp_path / "UserBehavior.csv", "1,10,100,pv,1\n1,11,pv,2\n")
  with pytest.raises(DataError) as e:
    loaders.read_taobao(path)
  assert e.value.line == 2 and "expected 5 fields" in str(e.value)


# --------------------------------------------------------------------------------------
# Generic tables.

def test_table_header_aliases(tmp_path, chunking):
  path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,3.5,10\n4,5,1,20\n")
  raw = loaders.read_table(path)
  assert raw.user.tolist() == [1, 4] and raw.item.tolist() == [2, 5]
  assert raw.value.tolist() == [3.5, 1.0] and raw.timestamp.tolist() == [10, 20]
  assert not raw.implicit


def test_table_tsv_implicit(tmp_path):
  path = write(tmp_path / "r.tsv", "user_id\titem_id\n1\t2\n3\t4\n")
  raw = loaders.read_table(path)
  assert raw.implicit and raw.value.tolist() == [1.0, 1.0] and raw.timestamp.tolist() == [-1, -1]


def test_table_named_columns_with_extra_fields(tmp_path):
  path = write(tmp_path / "r.csv", 'ts,who,what,title,stars\n5,u1,i1,"A, B",4\n6,u2,i1,C,2\n')
  raw = loaders.read_table(path, columns="who,what,stars,ts")
  assert raw.user.dtype.kind == "U" and raw.user.tolist() == ["u1", "u2"]
  assert raw.item.tolist() == ["i1", "i1"] and raw.value.tolist() == [4.0, 2.0]
  assert raw.timestamp.tolist() == [5, 6]
  raw = loaders.read_table(path, columns="item=what,user=who")
  assert raw.implicit and raw.user.tolist() == ["u1", "u2"]


def test_table_positional_columns(tmp_path):
  path = write(tmp_path / "r.txt", "9;x;1;2\n8;y;3;4\n")
  raw = loaders.read_table(path, columns="0,2,3")
  assert raw.user.tolist() == [9, 8] and raw.item.tolist() == [1, 3] and raw.value.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("sep,text", [
  (None, "1::2::5::7\n3::4::1::8\n"),
  (None, "1 2   5 7\n3\t4 1 8\n"),
  (None, "1;2;5;7\n3;4;1;8\n"),
  ("\\t", "1\t2\t5\t7\n3\t4\t1\t8\n"),
  ("comma", "1,2,5,7\n3,4,1,8\n"),
  ("whitespace", "1 2 5 7\n3 4 1 8\n"),
])
def test_table_separators_no_header(tmp_path, sep, text):
  raw = loaders.read_table(write(tmp_path / "r.txt", text), sep=sep)
  assert raw.user.tolist() == [1, 3] and raw.item.tolist() == [2, 4]
  assert raw.value.tolist() == [5.0, 1.0] and raw.timestamp.tolist() == [7, 8]


def test_table_string_ids_are_unicode(tmp_path):
  path = write(tmp_path / "r.csv", "user,item\nalice,m1\nbob,007\n")
  raw = loaders.read_table(path)
  assert raw.user.dtype.kind == "U" and raw.item.dtype.kind == "U"
  assert raw.item.tolist() == ["m1", "007"]
  assert raw.user.dtype != object


def test_table_string_ids_in_a_later_block(tmp_path, monkeypatch):
  monkeypatch.setattr(loaders, "CHUNK_BYTES", 16)
  path = write(tmp_path / "r.csv", "user,item\n" + "".join(f"{k},007\n" for k in range(20)) + "z,1\n")
  raw = loaders.read_table(path)
  assert raw.user.dtype.kind == "U" and raw.user.tolist()[:2] == ["0", "1"] and raw.user[-1] == "z"
  assert raw.item.dtype == np.int64 and raw.item[0] == 7  # each column decides on its own


def test_table_quoted_field_across_lines_and_blocks(tmp_path, small_chunks):
  path = write(tmp_path / "r.csv", 'user,item,note,rating\n1,2,"a\nlong, quoted\nnote",4\n'
               + "".join(f"{k},{k + 1},n,3\n" for k in range(3, 12)) + '20,21,"x ""y""",5\n')
  raw = loaders.read_table(path)
  assert raw.user.tolist() == [1] + list(range(3, 12)) + [20]
  assert raw.value.tolist() == [4.0] + [3.0] * 9 + [5.0]


def test_table_too_many_fields_without_columns(tmp_path):
  with pytest.raises(DataError, match="data.columns"):
    loaders.read_table(write(tmp_path / "r.csv", "1,2,3,4,5\n"))


def test_table_unknown_column_name(tmp_path):
  path = write(tmp_path / "r.csv", "a,b,c\n1,2,3\n")
  with pytest.raises(DataError) as e:
    loaders.read_table(path, columns="a,zzz")
  assert e.value.field == "item" and "a, b, c" in str(e.value)


def test_table_header_without_user_column(tmp_path):
  path = write(tmp_path / "r.csv", "uid2,item\n1,2\n")
  with pytest.raises(DataError, match="no user column"):
    loaders.read_table(path, header="yes")


def test_table_names_need_a_header(tmp_path):
  with pytest.raises(ConfigError):
    loaders.read_table(write(tmp_path / "r.csv", "1,2\n"), columns="user,item", header="no")


def test_table_unrecognised_header_gets_a_hint(tmp_path):
  path = write(tmp_path / "r.csv", "who,what,grade\n1,2,3\n")
  with pytest.raises(DataError) as e:
    loaders.read_table(path)
  assert e.value.line == 1 and e.value.field == "rating" and "data.header=yes" in str(e.value)
  path = write(tmp_path / "r.csv", "who,what,stars\n1,2,3\n")  # 'stars' is a rating alias
  with pytest.raises(DataError, match="no user and no item column.*who, what, stars"):
    loaders.read_table(path)


def test_table_empty_and_header_only(tmp_path):
  with pytest.raises(DataError, match="empty file"):
    loaders.read_table(write(tmp_path / "a.csv", ""))
  with pytest.raises(DataError, match="no rows"):
    loaders.read_table(write(tmp_path / "b.csv", "user,item,rating\n"))


def test_table_non_numeric_rating_in_csv(tmp_path):
  path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,good\n")
  with pytest.raises(DataError) as e:
    loaders.read_table(path)
  assert e.value.line == 3 and e.value.field == "rating"


def test_load_raw_csv(tmp_path):
  path = write(tmp_path / "x" / "r.csv", "user,item\n1,2\n")
  cfg = DataConfig(dataset="csv", data_dir=str(path))
  assert loaders.load_raw(cfg).item.tolist() == [2]
  assert loaders.load_raw(DataConfig(dataset="csv", data_dir=str(path.parent))).item.tolist() == [2]
  with pytest.raises(DataError, match="needs --data-dir"):
    loaders.load_raw(DataConfig(dataset="csv"))


# --------------------------------------------------------------------------------------
# Split folders.

def make_split(d, train="user_id\titem_id\n1\t10\n1\t11\n2\t10\n", valid="user_id\titem_id\n1\t12\n",
               test="user_id\titem_id\textra\n2\t11\tjunk\n"):
  write(d / "train.tsv", train)
  write(d / "valid.tsv", valid)
  write(d / "test.tsv", test)
  return d


def test_split_dir(tmp_path):
  out = loaders.read_split_dir(make_split(tmp_path))
  assert set(out) == {"train", "valid", "test"}
  assert out["train"].user.tolist() == [1, 1, 2] and out["train"].item.tolist() == [10, 11, 10]
  assert out["test"].item.tolist() == [11] and out["valid"].item.tolist() == [12]
  assert all(r.implicit and r.user.dtype == np.int64 for r in out.values())
  assert out["test"].source == str(tmp_path / "test.tsv")


def test_split_dir_string_ids_everywhere(tmp_path):
  out = loaders.read_split_dir(make_split(tmp_path, valid="user_id\titem_id\n1\tx\n"))
  assert all(r.item.dtype.kind == "U" and r.user.dtype.kind == "U" for r in out.values())
  assert out["train"].item.tolist() == ["10", "11", "10"]


def test_split_dir_empty_valid_is_allowed(tmp_path):
  out = loaders.read_split_dir(make_split(tmp_path, valid="user_id\titem_id\n"))
  assert len(out["valid"]) == 0


def test_split_dir_errors(tmp_path):
  make_split(tmp_path)
  (tmp_path / "valid.tsv").unlink()
  with pytest.raises(DataError, match="valid.tsv"):
    loaders.read_split_dir(tmp_path)
  with pytest.raises(DataError, match="not found"):
    loaders.read_split_dir(tmp_path / "nope")
  make_split(tmp_path, test="")
  with pytest.raises(DataError) as e:
    loaders.read_split_dir(tmp_path)
  assert "empty file" in str(e.value) and e.value.path == str(tmp_path / "test.tsv")
  make_split(tmp_path, test="user\titem\n1\t2\n")
  with pytest.raises(DataError) as e:
    loaders.read_split_dir(tmp_path)
  assert e.value.line == 1 and "user_id<TAB>item_id" in str(e.value)
  make_split(tmp_path, train="user_id\titem_id\n1\t10\n2\n")
  with pytest.raises(DataError) as e:
    loaders.read_split_dir(tmp_path)
  assert e.value.path == str(tmp_path / "train.tsv") and e.value.line == 3
  make_split(tmp_path, train="user_id\titem_id\n")
  with pytest.raises(DataError, match="no rows"):
    loaders.read_split_dir(tmp_path)


# --------------------------------------------------------------------------------------
# Missing files and folders; dispatch.

def test_missing_and_empty_files(tmp_path):
  with pytest.raises(DataError) as e:
    loaders.read_ml100k(tmp_path)
  assert "not found" in str(e.value) and e.value.path == str(tmp_path / "u.data")
  write(tmp_path / "u.data", "")
  with pytest.raises(DataError, match="no rows"):
    loaders.read_ml100k(tmp_path)
  write(tmp_path / "u.data", "\n\n")
  with pytest.raises(DataError, match="no rows"):
    loaders.read_ml100k(tmp_path)


def test_resolve_data_dir(tmp_path):
  write(tmp_path / "ml-10M100K" / "ratings.dat", "1::1::1::1\n")
  write(tmp_path / "ml-100k" / "u.data", "1\t1\t1\t1\n")
  assert loaders.resolve_data_dir("ml-10m", tmp_path, expect=("ratings.dat",)) == tmp_path / "ml-10M100K"
  assert loaders.resolve_data_dir("ml-100k", tmp_path / "ml-100k", expect=("u.data",)) == tmp_path / "ml-100k"
  assert loaders.resolve_data_dir("ml-100k", tmp_path / "ml-100k" / "u.data",
                                  expect=("u.data",)) == tmp_path / "ml-100k"
  assert loaders.resolve_data_dir("ml-100k", None, expect=("u.data",),
                                  cache_dir=tmp_path) == tmp_path / "ml-100k"
  with pytest.raises(DataError) as e:
    loaders.resolve_data_dir("ml-1m", tmp_path, expect=("ratings.dat",))
  msg = str(e.value)
  assert "ratings.dat" in msg and str(tmp_path / "ml-1m") in msg and str(tmp_path) in msg
  with pytest.raises(DataError, match="data folder not found"):
    loaders.resolve_data_dir("ml-1m", tmp_path / "missing", expect=("ratings.dat",))


def test_load_raw_movielens_missing_without_download(tmp_path):
  cfg = DataConfig(dataset="ml-1m", data_dir=str(tmp_path), download=False, cache_dir=str(tmp_path / "c"))
  with pytest.raises(DataError) as e:
    loaders.load_raw(cfg)
  msg = str(e.value)
  assert "data.download=false" in msg and str(tmp_path / "c" / "ml-1m" / "ratings.dat") in msg
  assert str(tmp_path / "ml-1m") in msg and "ml-1m.zip" in msg


def test_load_raw_movielens_downloads_when_missing(tmp_path, monkeypatch):
  folder = tmp_path / "cache" / "ml-100k"
  make_ml100k(folder)
  calls = []

  def fake_ensure(name, cache_dir, *, allow_download=True, timeout=30):
    calls.append((name, cache_dir, allow_download))
    return folder

  monkeypatch.setattr(download, "ensure_movielens", fake_ensure)
  raw = loaders.load_raw(DataConfig(dataset="ml-100k", cache_dir=str(tmp_path / "elsewhere")))
  assert calls == [("ml-100k", str(tmp_path / "elsewhere"), True)] and len(raw) == 3


def test_load_raw_finds_the_cache_without_data_dir(tmp_path, monkeypatch):
  make_ml100k(tmp_path / "ml-100k")
  monkeypatch.setattr(download, "ensure_movielens", lambda *a, **k: pytest.fail("no download"))
  assert len(loaders.load_raw(DataConfig(dataset="ml-100k", cache_dir=str(tmp_path)))) == 3


def test_load_raw_rejects_datasets_loaded_elsewhere():
  for ds in ("synthetic", "split-dir"):
    with pytest.raises(ConfigError):
      loaders.load_raw(DataConfig(dataset=ds))


# --------------------------------------------------------------------------------------
# TFDS (optional extra).

HAVE_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None


@pytest.mark.skipif(not HAVE_TFDS, reason="tensorflow-datasets (the optional tfds extra) is not installed")
def test_tfds_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    raw = tfds_source.load_tfds("movielens/100k-ratings", None)
  assert len(raw) == 6 and raw.value.dtype == np.float32 and raw.timestamp.dtype == np.int64
  assert raw.user.dtype != object and raw.item.dtype != object
  assert raw.categories is None or raw.categories.category.dtype == np.int32
  assert raw.source.startswith("tfds:movielens/100k-ratings")


def test_tfds_missing_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
  with pytest.raises(tfds_source.TfdsUnavailableError) as e:
    tfds_source.load_tfds("movielens/1m-ratings", None)
  assert isinstance(e.value, XploError) and isinstance(e.value, ImportError)
  assert "pip install 'xplo_jax[tfds]'" in str(e.value)


def test_tfds_unknown_config():
  with pytest.raises(DataError, match="1m-ratings"):
    tfds_source.load_tfds("movielens/2m-ratings", None)
