"""Test configuration: strict numerics and the location of the shared real data.

JAX settings here are test-only (never set in library code): rank promotion raises,
and float64 stays off so tests run what users run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XPLO_SHARED_DATA", REPO.parent / "shared" / "data"))

try:  # JAX is a dependency, but the data tests must not need it.
  import jax
  jax.config.update("jax_numpy_rank_promotion", "raise")
except ImportError:  # pragma: no cover
  jax = None


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """The folder of real datasets (../shared/data); skips when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real datasets not found at {SHARED_DATA} (set XPLO_SHARED_DATA)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def ml100k_dir(shared_data) -> Path:
  d = shared_data / "ml-100k"
  if not (d / "u.data").is_file():
    pytest.skip(f"MovieLens 100K not found at {d}/u.data")
  return d


@pytest.fixture(scope="session")
def taobao_csv(shared_data) -> Path:
  p = shared_data / "taobao-user-behavior-sample" / "UserBehavior.csv"
  if not p.is_file():
    pytest.skip(f"Taobao sample not found at {p}")
  return p


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
  """The shards of the tiny synthetic set (``tiny.SMALL``), built once per session.

  Modules whose tests need other preprocessing define their own ``tiny_data``.
  """
  from tiny import small_cfg
  from xplo_jax.data import load_split
  from xplo_jax.preprocess import preprocess
  cfg = small_cfg()
  return preprocess(load_split(cfg.data), cfg.preprocess, tmp_path_factory.mktemp("tiny-shards"), progress=False)
