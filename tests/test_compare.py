"""experiments/compare.py end to end on a tiny synthetic set."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


TINY = ["data.synthetic_preset=tiny", "preprocess.knn=20", "model.latent_dim=16", "model.hidden_dim=32",
        "train.batch_size=64", "eval.user_batch=128", "train.epochs=2"]


def test_compare_writes_parseable_tables_and_reuses_finished_points(tmp_path, monkeypatch):
  compare = load("compare")
  out = tmp_path / "cmp"
  args = ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--models", "xplovae,xplovae-uniform,popularity",
          "--seeds", "2", "--no-progress", *TINY]
  assert compare.main(args) == 0
  for f in ("table1.md", "table1.csv", "tables.md", "results.csv", "table2_recall@20.csv", "table3_ndcg@20.csv",
            "table4_pild@20.csv"):
    assert (out / f).is_file(), f
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert len(rows) == 6 and {r["variant"] for r in rows} == {"xplovae", "xplovae-uniform", "popularity"}
  for r in rows:                          # the CSV holds what each run's final.json says
    final = json.loads((out / r["variant"] / f"seed{r['seed']}" / "final.json").read_text())
    assert float(r["recall@20"]) == pytest.approx(final["test"]["recall@20"])
  t2 = {r["variant"]: r for r in csv.DictReader(open(out / "table2_recall@20.csv"))}
  xs = [float(r["recall@20"]) for r in rows if r["variant"] == "xplovae"]
  assert float(t2["xplovae"]["mean"]) == pytest.approx(sum(xs) / 2)
  md = (out / "tables.md").read_text()
  assert "T(J&P) is a labelled reconstruction" in md and "min(K, |I_u|)" in md
  assert f"{sum(xs) / 2:.4f} ±" in md
  # A second call trains nothing: every point is reused.
  from xplo_jax import train
  monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: pytest.fail("recomputed a finished point"))
  assert compare.main(args) == 0


def test_compare_rejects_unknown_models(tmp_path):
  from xplo_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="unknown"):
    load("compare").main(["--models", "nope", "--out", str(tmp_path)])
