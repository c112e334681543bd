"""Fig. 3 of the paper: t-SNE of the user-specific item embeddings of six users.

  python experiments/tsne.py --runs-dir runs/compare-ml-100k --dataset ml-100k --data-dir ../shared/data
                             [--out DIR] [--users 6] [--seed 0] [--max-items 50] [--relevant train]

The paper: "we randomly selected six users ... as well as their relevant items. We
observe how their representations are influenced w.r.t. having shared or individual
item embeddings ... (a) XploVAE-1st that only includes the first-order proximity and
(b) XploVAE ... The points with the same color denote relevant items accessed by the
same user."

For each trained run (``<runs-dir>/xplovae-1st/seed0`` and ``<runs-dir>/xplovae/seed0``,
written by ``python experiments/compare.py --dataset ml-100k --data-dir ../shared/data
--models xplovae,xplovae-1st``) this restores the best checkpoint (``final.json``'s
``best_epoch``), takes the same seeded random users (those with at least
``min_items`` relevant items), and for each user u and each of u's relevant items v
computes the user-specific item embedding

    S_v(z_u) ∈ R^D   at z_u = μ_u (the posterior mean, as at ranking time),

i.e. ``XploVAE.item_embeddings(μ, items)``. The points of one panel are the
concatenation over the users (an item relevant to two users appears twice, once
per user: S depends on z). Each panel is its own scikit-learn t-SNE (seeded,
``init='pca'``, perplexity min(30, (n − 1) / 3) for n points) and is coloured by
user. The paper's claim is qualitative ("points with the same color" cluster); to
put a number on it, each panel also reports the silhouette score of the user labels
(``sklearn.metrics.silhouette_score``, Euclidean) in the t-SNE plane and in the raw
D-dim space of S. Readings of the paper made here:

* "relevant items" = the user's *train* items (the items "purchased by the same
  users" that the encoder saw), at most ``max_items`` (50) per user, a seeded random
  subset when a user has more; ``--relevant test`` (held-out test items) or ``all``
  (train + valid + test) are the alternatives.
* "six users, randomly selected": uniformly among the users with ≥ 5 relevant items,
  seeded (``--seed``), the same users in both panels.

Writes ``<out>/fig3_tsne.png`` (side-by-side panels, ~100 KB), ``fig3_tsne.csv`` (one
row per (model, user, item): t-SNE x, y and the raw S coordinates s0..s{D-1}) and
``fig3_tsne.json`` (users, items, perplexity, silhouette scores per panel).
scikit-learn is an optional extra (``pip install -e .[experiments]``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:          # runnable from a checkout without installing
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from xplo_jax.errors import ConfigError, XploError, cli_main  # noqa: E402
from xplo_jax.fileio import atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("tsne")

__all__ = ["tsne_figure", "load_best_model", "pick_users", "user_item_embeddings", "PANELS"]

# Panel label -> variant folder of experiments/compare.py (the paper's (a) and (b)).
PANELS = {"XploVAE-1st": "xplovae-1st", "XploVAE": "xplovae"}
RELEVANT = ("train", "test", "all")


def _require_sklearn():
  try:
    import sklearn  # noqa: F401
  except ImportError:
    raise XploError("the t-SNE figure needs scikit-learn, an optional extra: "
                    "pip install scikit-learn (or pip install -e .[experiments])") from None


def load_best_model(workdir, data):
  """Rebuilds an XploVAE run's model at its best checkpoint.

  Args:
    workdir: a run folder written by ``train_and_evaluate`` (config.json, final.json,
      checkpoints/).
    data: the SubgraphData the run was trained on (its shard fingerprint must match).

  Returns:
    (cfg, model, best_epoch): the run's Config, the merged ``XploVAE`` module, the epoch.
  """
  from flax import nnx

  from xplo_jax import sharding as shard_lib
  from xplo_jax.checkpoint import Checkpointer
  from xplo_jax.config import config_from_dict
  from xplo_jax.recipes import get_recipe
  from xplo_jax.train import create_state

  workdir = Path(workdir)
  conf = workdir / "config.json"
  if not conf.is_file():
    raise XploError(f"{conf}: not found; is {workdir} a finished run folder?")
  stored = json.loads(conf.read_text())
  cfg = config_from_dict(stored["config"])
  if cfg.model.name != "xplovae":
    raise ConfigError(f"{workdir}: model {cfg.model.name!r}; the t-SNE figure needs XploVAE runs")
  fp = stored.get("shards", {}).get("fingerprint")
  if fp is not None and fp != data.fingerprint:
    raise XploError(f"{workdir} was trained on shards {fp}, the data given are {data.fingerprint} "
                    "(another dataset or preprocessing config)")
  final = workdir / "final.json"
  ckpt = Checkpointer(workdir / "checkpoints")
  try:
    best = json.loads(final.read_text())["best_epoch"] if final.is_file() else ckpt.best()
    if best is None or best < 0:
      raise XploError(f"{workdir}: no checkpoint to restore (train it first)")
    recipe = get_recipe(cfg.model.name)
    _, graphdef, params, rest, opt_state = create_state(cfg, data, recipe, shard_lib.make_mesh(1))
    params, _, _ = ckpt.restore(int(best), params, opt_state)
  finally:
    ckpt.close()
  return cfg, nnx.merge(graphdef, params, rest), int(best)


def _relevant_pairs(split, relevant: str):
  if relevant not in RELEVANT:
    raise ConfigError(f"relevant: expected one of {', '.join(RELEVANT)}, got {relevant!r}")
  parts = {"train": [split.train], "test": [split.test], "all": [split.train, split.valid, split.test]}[relevant]
  return np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts])


def pick_users(data, n_users: int = 6, seed: int = 0, *, min_items: int = 5, max_items: int = 50,
               relevant: str = "train") -> dict[int, np.ndarray]:
  """The seeded random users and their relevant items (sorted ids), model-independent.

  Users are drawn uniformly without replacement among those with ≥ ``min_items``
  relevant items; a user with more than ``max_items`` keeps a seeded random subset.

  Returns:
    {user id: int32 array of item ids}, users in increasing id order.
  """
  if n_users < 2:
    raise ConfigError("n_users must be >= 2 (the silhouette needs two groups)")
  users, items = _relevant_pairs(data.split, relevant)
  order = np.lexsort((items, users))
  users, items = users[order], items[order]
  counts = np.bincount(users, minlength=data.n_users)
  eligible = np.flatnonzero(counts >= min_items)
  if len(eligible) < n_users:
    raise XploError(f"only {len(eligible)} users have >= {min_items} {relevant} items; asked for {n_users}")
  rng = np.random.default_rng(seed)
  chosen = np.sort(rng.choice(eligible, size=n_users, replace=False))
  starts = np.concatenate([[0], np.cumsum(counts)])
  out = {}
  for u in chosen.tolist():
    its = items[starts[u]:starts[u + 1]]
    if len(its) > max_items:
      its = np.sort(rng.choice(its, size=max_items, replace=False))
    out[u] = its.astype(np.int32)
  return out


def user_item_embeddings(model, data, chosen: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
  """S(z_u = μ_u) at each chosen user's items: {user: [n_u, D] float32}.

  One batch: the users' encoder inputs from the shards, item lists padded to the
  longest with item 0 (a valid id; the padded rows are dropped).
  """
  import jax.numpy as jnp
  users = np.asarray(list(chosen), np.int64)
  width = max(len(v) for v in chosen.values())
  items = np.zeros((len(users), width), np.int32)
  for r, u in enumerate(users.tolist()):
    items[r, :len(chosen[u])] = chosen[u]
  batch = data.batch(users)
  mu, _ = model.encode({k: jnp.asarray(batch[k]) for k in ("a1_ids", "a1_len", "a2_ids", "a2_len")})
  emb = np.asarray(model.item_embeddings(mu, jnp.asarray(items)))          # [B, width, D]
  return {u: emb[r, :len(chosen[u])] for r, u in enumerate(users.tolist())}


def _tsne(x: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
  from sklearn.manifold import TSNE
  from threadpoolctl import threadpool_limits      # a dependency of scikit-learn
  n = len(x)
  # sklearn needs perplexity < n; ~n/3 keeps every point's neighbourhood inside a handful of users.
  perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
  # One OpenMP thread: for a few hundred points the Barnes-Hut gradient is fastest single-threaded, and
  # on shared cores sklearn's default (all cores) oversubscribes them (measured 6 s vs 0.3 s for 92 points).
  with threadpool_limits(limits=1):
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
             random_state=seed).fit_transform(x.astype(np.float64))
  return y, perplexity


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
  from sklearn.metrics import silhouette_score
  return float(silhouette_score(x, labels, metric="euclidean"))


def _plot(panels: list[dict], out_png: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4.4), squeeze=False)
  cmap = plt.get_cmap("tab10")
  for ax, (tag, p) in zip(axes[0], zip("abcdefgh", panels)):
    for c, u in enumerate(p["users"]):
      sel = p["labels"] == u
      ax.scatter(p["xy"][sel, 0], p["xy"][sel, 1], s=14, color=cmap(c % 10), alpha=0.85,
                 label=f"user {u} ({int(sel.sum())})", linewidths=0)
    ax.set_title(f"({tag}) {p['label']}\nsilhouette: t-SNE {p['silhouette_tsne']:.2f}, "
                 f"S(μ) {p['silhouette_raw']:.2f}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0][-1].legend(fontsize=7, loc="best", frameon=False)
  fig.suptitle("t-SNE of user-specific item embeddings S(μ_u) at each user's relevant items", fontsize=9)
  fig.tight_layout()
  out_png.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out_png, dpi=90)
  plt.close(fig)


def tsne_figure(runs: dict[str, Path], data, out_png, out_csv, n_users: int = 6, seed: int = 0, *,
                max_items: int = 50, min_items: int = 5, relevant: str = "train",
                progress: bool = False) -> dict:
  """Fig. 3: t-SNE panels of S(z_u = μ_u) at the relevant items of ``n_users`` users.

  Args:
    runs: panel label -> XploVAE run folder (e.g. {"XploVAE-1st": ..., "XploVAE": ...}).
    data: the SubgraphData all runs were trained on.
    out_png, out_csv: the figure and the points behind it; a JSON summary is written
      next to the CSV (same name, ``.json``).
    n_users: users drawn (same users and items in every panel).
    seed: the user/item draw and the t-SNE seed.
    max_items: cap on a user's items (seeded subset); min_items: eligibility.
    relevant: 'train' (default), 'test' or 'all' — which of a user's items are shown.
    progress: a tqdm bar over the runs.

  Returns:
    The JSON summary: users, items per user, and per panel the run, best epoch,
    perplexity and the silhouette scores (t-SNE plane and raw D-dim S).
  """
  _require_sklearn()
  from tqdm.auto import tqdm
  out_png, out_csv = Path(out_png), Path(out_csv)
  chosen = pick_users(data, n_users, seed, min_items=min_items, max_items=max_items, relevant=relevant)
  users = list(chosen)
  panels, rows = [], []
  for label, workdir in tqdm(list(runs.items()), desc="t-SNE", unit="run", disable=not progress):
    cfg, model, best = load_best_model(workdir, data)
    emb = user_item_embeddings(model, data, chosen)
    x = np.concatenate([emb[u] for u in users])                              # [n, D]
    labels = np.concatenate([np.full(len(chosen[u]), u) for u in users])
    item_ids = np.concatenate([chosen[u] for u in users])
    xy, perplexity = _tsne(x, seed)
    p = {"label": label, "run": str(workdir), "best_epoch": best, "orders": cfg.model.orders,
         "conv_layers": cfg.model.conv_layers, "embed_dim": int(x.shape[1]), "points": int(len(x)),
         "perplexity": perplexity, "silhouette_tsne": _silhouette(xy, labels),
         "silhouette_raw": _silhouette(x, labels)}
    panels.append({**p, "users": users, "labels": labels, "xy": xy})
    for i in range(len(x)):
      rows.append({"model": label, "user": int(labels[i]), "item": int(item_ids[i]),
                   "x": float(xy[i, 0]), "y": float(xy[i, 1]),
                   **{f"s{d}": float(x[i, d]) for d in range(x.shape[1])}})
    print(f"{label}: {len(x)} points, silhouette of the user labels: t-SNE plane {p['silhouette_tsne']:.3f}, "
          f"raw S(mu) {p['silhouette_raw']:.3f}  (best epoch {best}, {workdir})")
  _plot(panels, out_png)
  buf = io.StringIO()
  fields = list(rows[0]) if rows else ["model", "user", "item", "x", "y"]
  w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  atomic_write_text(out_csv, buf.getvalue())
  summary = {"figure": str(out_png), "csv": str(out_csv), "seed": seed, "relevant": relevant,
             "max_items": max_items, "min_items": min_items, "users": users,
             "items": {str(u): chosen[u].tolist() for u in users},
             "panels": {p["label"]: {k: v for k, v in p.items() if k not in ("users", "labels", "xy", "label")}
                        for p in panels}}
  atomic_write_json(out_csv.with_suffix(".json"), summary)
  return summary


def _load_data(args, runs: dict[str, Path]):
  """The shards the runs were trained on: rebuilt (or reused) from the first run's config."""
  from xplo_jax.config import apply_overrides, config_from_dict
  from xplo_jax.preprocess import prepare_cached
  stored = json.loads((next(iter(runs.values())) / "config.json").read_text())
  cfg = config_from_dict(stored["config"])
  if args.dataset and cfg.data.dataset != args.dataset:
    raise ConfigError(f"--dataset {args.dataset}, but the runs were trained on {cfg.data.dataset}")
  if args.data_dir:          # the same files may live elsewhere on this machine
    cfg = apply_overrides(cfg, {"data.data_dir": args.data_dir})
  cache = Path(args.cache_dir) if args.cache_dir else REPO / "runs" / "cache"
  _, data = prepare_cached(cfg, cache, progress=not args.no_progress)
  return data


def main(argv: Optional[list[str]] = None) -> int:
  from xplo_jax.config import DATASETS, Config, apply_overrides
  from xplo_jax.data import dataset_name
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs-dir", default=None, help="a compare.py output folder (default: runs/compare-<dataset>)")
  p.add_argument("--dataset", default=None, choices=DATASETS, help="checked against the runs' config")
  p.add_argument("--data-dir", default=None, help="where the dataset lives on this machine")
  p.add_argument("--cache-dir", default=None, help="preprocessed shards (default: runs/cache, as compare.py)")
  p.add_argument("--run-seed", type=int, default=0, help="which seed<N> folder of each variant")
  p.add_argument("--out", default=None, help="default: <runs-dir>/tsne")
  p.add_argument("--users", type=int, default=6)
  p.add_argument("--seed", type=int, default=0, help="user draw and t-SNE seed")
  p.add_argument("--max-items", type=int, default=50)
  p.add_argument("--relevant", default="train", choices=RELEVANT)
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args(argv)
  _require_sklearn()
  if args.runs_dir:
    runs_dir = Path(args.runs_dir)
  else:
    cfg = apply_overrides(Config(), {"data.dataset": args.dataset or "synthetic"})
    runs_dir = REPO / "runs" / f"compare-{dataset_name(cfg.data)}"
  runs = {label: runs_dir / variant / f"seed{args.run_seed}" for label, variant in PANELS.items()}
  missing = [str(w) for w in runs.values() if not (w / "final.json").is_file()]
  if missing:
    ds = f" --dataset {args.dataset}" if args.dataset else ""
    dd = f" --data-dir {args.data_dir}" if args.data_dir else ""
    raise XploError(f"no finished run at {', '.join(missing)}; train both variants first:\n"
                    f"  python experiments/compare.py{ds}{dd} --out {runs_dir} --models xplovae,xplovae-1st")
  data = _load_data(args, runs)
  out = Path(args.out) if args.out else runs_dir / "tsne"
  summary = tsne_figure(runs, data, out / "fig3_tsne.png", out / "fig3_tsne.csv", n_users=args.users,
                        seed=args.seed, max_items=args.max_items, relevant=args.relevant,
                        progress=not args.no_progress)
  print("silhouette of the user labels:", json.dumps({k: {"tsne": round(v["silhouette_tsne"], 4),
                                                          "raw": round(v["silhouette_raw"], 4)}
                                                      for k, v in summary["panels"].items()}))
  print(f"wrote {out}/fig3_tsne.png, fig3_tsne.csv, fig3_tsne.json")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main))
