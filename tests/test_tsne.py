"""experiments/tsne.py (Fig. 3): the points shown are S(μ_u) at the chosen users' train items.

Two tiny XploVAE runs (orders 2 and 1, 2 epochs each) on the planted synthetic set,
laid out as experiments/compare.py writes them; then the figure, its CSV/JSON, and
an independent recomputation of one user's embeddings from the checkpoint.

  python -m pytest tests/test_tsne.py
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn (optional extra 'experiments') is not installed: "
                    "pip install scikit-learn")

from xplo_jax.config import Config, apply_overrides, config_from_dict  # noqa: E402
from xplo_jax.data import load_split  # noqa: E402
from xplo_jax.errors import XploError  # noqa: E402
from xplo_jax.preprocess import preprocess  # noqa: E402
from xplo_jax.train import train_and_evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tsne", REPO / "experiments" / "tsne.py")
tsne = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tsne)

SMALL = ["data.synthetic_preset=tiny", "preprocess.knn=20", "model.latent_dim=16", "model.hidden_dim=32",
         "train.batch_size=64", "eval.user_batch=128", "train.epochs=2", "train.eval_every=1"]
CAP = 8          # every tiny user has >= 11 train items: the cap is exercised for all six


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(data, runs-dir, {label: run folder}) with both variants trained."""
  root = tmp_path_factory.mktemp("tsne")
  cfg = apply_overrides(Config(), SMALL)
  data = preprocess(load_split(cfg.data), cfg.preprocess, root / "shards", progress=False)
  runs_dir = root / "compare"
  runs = {}
  for label, variant in tsne.PANELS.items():
    extra = ["model.orders=1"] if variant == "xplovae-1st" else []
    runs[label] = runs_dir / variant / "seed0"
    train_and_evaluate(apply_overrides(cfg, extra), runs[label], data, progress=False)
  return data, runs_dir, runs


def _direct_embeddings(workdir: Path, data, user: int, items: np.ndarray) -> np.ndarray:
  """S(μ_u) at ``items`` for one user, rebuilt here without tsne.py's loader or batching."""
  import jax.numpy as jnp
  from flax import nnx
  from xplo_jax.checkpoint import Checkpointer
  from xplo_jax.recipes import get_recipe
  from xplo_jax.sharding import make_mesh
  from xplo_jax.train import create_state
  cfg = config_from_dict(json.loads((workdir / "config.json").read_text())["config"])
  best = json.loads((workdir / "final.json").read_text())["best_epoch"]
  _, graphdef, params, rest, opt = create_state(cfg, data, get_recipe("xplovae"), make_mesh(1))
  ckpt = Checkpointer(workdir / "checkpoints")
  params, _, _ = ckpt.restore(best, params, opt)
  ckpt.close()
  model = nnx.merge(graphdef, params, rest)
  b = data.batch(np.array([user]))
  mu, _ = model.encode({k: jnp.asarray(b[k]) for k in ("a1_ids", "a1_len", "a2_ids", "a2_len")})
  return np.asarray(model.item_embeddings(mu, jnp.asarray(items, jnp.int32)[None]))[0]


def test_tsne_figure_shows_the_users_item_embeddings(trained, tmp_path):
  from sklearn.metrics import silhouette_score
  data, _, runs = trained
  out = tmp_path / "fig"
  summary = tsne.tsne_figure(runs, data, out / "fig3.png", out / "fig3.csv", n_users=6, seed=0, max_items=CAP)
  png = (out / "fig3.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(png) < 300_000
  assert json.loads((out / "fig3.json").read_text()) == json.loads(json.dumps(summary))

  rows = list(csv.DictReader((out / "fig3.csv").open()))
  assert len(rows) == 2 * 6 * CAP
  assert list(rows[0]) == ["model", "user", "item", "x", "y", "s0", "s1", "s2"]      # D = 3
  train_items = {}
  for u, i in zip(data.split.train.user.tolist(), data.split.train.item.tolist()):
    train_items.setdefault(u, set()).add(i)
  per_model = {}
  for r in rows:
    per_model.setdefault(r["model"], {}).setdefault(int(r["user"]), []).append(int(r["item"]))
  assert set(per_model) == set(runs)
  assert per_model["XploVAE"] == per_model["XploVAE-1st"]          # same users, same items, same order
  assert sorted(per_model["XploVAE"]) == summary["users"] and len(summary["users"]) == 6
  for u, items in per_model["XploVAE"].items():
    assert len(items) == len(set(items)) == CAP and set(items) <= train_items[u]

  for label in runs:
    sel = [r for r in rows if r["model"] == label]
    xy = np.array([[float(r["x"]), float(r["y"])] for r in sel])
    s = np.array([[float(r[f"s{d}"]) for d in range(3)] for r in sel])
    labels = np.array([int(r["user"]) for r in sel])
    assert np.all(np.isfinite(xy)) and np.all(np.isfinite(s)) and xy.std(0).min() > 0
    panel = summary["panels"][label]
    assert -1.0 <= panel["silhouette_tsne"] <= 1.0 and -1.0 <= panel["silhouette_raw"] <= 1.0
    assert panel["silhouette_tsne"] == pytest.approx(silhouette_score(xy, labels), abs=1e-5)
    assert panel["silhouette_raw"] == pytest.approx(silhouette_score(s, labels), abs=1e-5)
    assert panel["orders"] == (1 if label == "XploVAE-1st" else 2) and panel["points"] == 6 * CAP
    # The figure shows what it claims: S(μ_u) at u's items, recomputed for one user from the checkpoint.
    u = summary["users"][1]
    items = np.array([int(r["item"]) for r in sel if int(r["user"]) == u])
    want = _direct_embeddings(runs[label], data, u, items)
    np.testing.assert_allclose(s[labels == u], want, atol=1e-5, rtol=1e-4)
  s1 = np.array([[float(r[f"s{d}"]) for d in range(3)] for r in rows if r["model"] == "XploVAE-1st"])
  s2 = np.array([[float(r[f"s{d}"]) for d in range(3)] for r in rows if r["model"] == "XploVAE"])
  assert not np.allclose(s1, s2)                                    # each panel restored its own run


def test_pick_users_is_seeded_and_respects_the_bounds(trained):
  data = trained[0]
  a = tsne.pick_users(data, 6, seed=0, max_items=CAP)
  assert {u: v.tolist() for u, v in a.items()} == {u: v.tolist() for u, v in tsne.pick_users(
      data, 6, seed=0, max_items=CAP).items()}
  assert list(a) != list(tsne.pick_users(data, 6, seed=1, max_items=CAP))
  test_counts = np.bincount(data.split.test.user, minlength=data.n_users)
  t = tsne.pick_users(data, 6, seed=0, min_items=4, relevant="test")
  assert all(test_counts[u] >= 4 and len(v) == test_counts[u] for u, v in t.items())
  with pytest.raises(XploError, match="users have >= 10000"):
    tsne.pick_users(data, 6, min_items=10_000)


def test_cli_points_to_compare_when_runs_are_missing_and_reloads_the_same_shards(trained, tmp_path):
  data, runs_dir, runs = trained
  with pytest.raises(XploError, match=r"compare\.py .*--models xplovae,xplovae-1st"):
    tsne.main(["--runs-dir", str(tmp_path / "nothing")])
  args = argparse.Namespace(dataset="synthetic", data_dir=None, cache_dir=str(tmp_path / "cache"), no_progress=True)
  assert tsne._load_data(args, runs).fingerprint == data.fingerprint
  with pytest.raises(XploError, match="trained on synthetic"):
    tsne._load_data(argparse.Namespace(**{**vars(args), "dataset": "ml-100k"}), runs)
