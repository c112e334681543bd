"""Fig. 6: time per iteration against the fraction of training data and against the embedding size D.

  python experiments/efficiency.py --dataset ml-100k --data-dir ../shared/data [--steps 20] [--out DIR]
                                   [section.field=value ...]

The paper (§5.2.4, on Netflix): "we fix the code length as 8 bits, and gradually
increase the size of training data. Secondly, we fix the training ratio (50% for
training), and then tune the value of code length. In both cases, the time required
per iteration will be linearly increased." Here "code length" is XploVAE's embedding
size D (``model.embed_dim``). For each fraction f ∈ {0.1, …, 1.0} of every user's
train interactions (seeded, ≥ 1 kept per user; valid/test unchanged) at D = 8, and
for each D ∈ {1, 2, 4, 8, 16, 32} at f = 0.5: preprocess (timed), compile the one
train step, then time ``--steps`` steps after compilation (median). An epoch is
the steps per epoch × that median. Writes ``fig6.png`` and ``fig6.csv`` (with a
least-squares line and its R² per curve, so "linear" can be checked); finished
points are reused from ``fig6.csv``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from experiments.common import (figure_parser, parse_figure_args, read_csv, save_figure,  # noqa: E402
                                time_train_step, write_csv)

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DIMS = (1, 2, 4, 8, 16, 32)
FIXED_D = 8           # "we fix the code length as 8 bits"
FIXED_FRACTION = 0.5  # "we fix the training ratio (50% for training)"


def subsample_train(split, fraction: float, seed: int = 0):
  """The split with each user's train interactions subsampled to ``fraction`` (≥ 1 kept)."""
  import numpy as np
  from xplo_jax.data.types import Pairs
  if fraction >= 1.0:
    return split
  rng = np.random.default_rng([seed, int(round(fraction * 1000))])
  u = split.train.user
  counts = np.bincount(u, minlength=split.n_users)
  keys = rng.random(len(u))
  order = np.lexsort((keys, u))
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(len(u), np.int64)
  rank[order] = np.arange(len(u)) - starts[u[order]]
  keep = rank < np.maximum(1, np.floor(fraction * counts[u] + 0.5))
  train = Pairs(split.train.user[keep].copy(), split.train.item[keep].copy())
  return dataclasses.replace(split, train=train)


def time_point(cfg, split, cache: Path, steps: int) -> dict:
  """Preprocess ``split`` (its own measured time), then time the train step on it."""
  from xplo_jax.preprocess import preprocess, preprocess_fingerprint
  out = cache / f"efficiency-{preprocess_fingerprint(split, cfg.preprocess)}"
  data = preprocess(split, cfg.preprocess, out, progress=False)
  r = time_train_step(cfg, data, steps)
  keep = ("width1", "width2", "compile_s", "step_ms", "epoch_s", "steps_per_epoch", "backend")
  return {"train_interactions": len(split.train), "preprocess_s": float(data.manifest["timing"]["total_s"]),
          **{k: r[k] for k in keep}}


def linear_fit(xs, ys) -> tuple[float, float, float]:
  """(slope, intercept, R²) of the least-squares line."""
  import numpy as np
  xs, ys = np.asarray(xs, float), np.asarray(ys, float)
  if len(xs) < 2:
    return 0.0, float(ys.mean()) if len(ys) else 0.0, 1.0
  a, b = np.polyfit(xs, ys, 1)
  resid = ys - (a * xs + b)
  ss = ((ys - ys.mean()) ** 2).sum()
  return float(a), float(b), float(1 - (resid ** 2).sum() / ss) if ss > 0 else 1.0


def run(base, out: Path, *, steps: int = 20, fractions=FRACTIONS, dims=DIMS, progress: bool = True,
        cache_dir=None) -> list[dict]:
  from tqdm.auto import tqdm
  from xplo_jax.config import apply_overrides
  from xplo_jax.data import load_split
  cache = Path(cache_dir) if cache_dir else REPO / "runs" / "cache"
  csv_path = out / "fig6.csv"
  done = {(r["sweep"], float(r["x"])): r for r in (read_csv(csv_path) if csv_path.is_file() else [])
          if int(r["steps"]) == steps}
  split = load_split(base.data)
  points = [("fraction", f, FIXED_D, f) for f in fractions] + [("embed_dim", d, d, FIXED_FRACTION) for d in dims]
  rows = []
  for sweep, x, d, frac in tqdm(points, desc="fig6", disable=not progress, dynamic_ncols=True):
    if (sweep, float(x)) in done:
      rows.append(done[(sweep, float(x))])
      continue
    cfg = apply_overrides(base, ["model.name=xplovae", f"model.embed_dim={d}"]).validate()
    r = time_point(cfg, subsample_train(split, frac), cache, steps)
    rows.append({"sweep": sweep, "x": x, "embed_dim": d, "fraction": frac, "steps": steps, **r})
    write_csv(csv_path, rows)
  for sweep in ("fraction", "embed_dim"):
    sub = [r for r in rows if r["sweep"] == sweep]
    a, b, r2 = linear_fit([float(r["x"]) for r in sub], [float(r["step_ms"]) for r in sub])
    for r in sub:
      r["fit_slope_ms"], r["fit_intercept_ms"], r["fit_r2"] = a, b, r2
  write_csv(csv_path, rows)
  plot(rows, out / "fig6.png", dataset=base.data.dataset)
  return rows


def plot(rows: list[dict], path: Path, dataset: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.5))
  for ax, sweep, xlabel in ((axes[0], "fraction", f"fraction of training data (D = {FIXED_D})"),
                            (axes[1], "embed_dim", f"embedding size D (\"code length\", f = {FIXED_FRACTION})")):
    sub = [r for r in rows if r["sweep"] == sweep]
    xs = [float(r["x"]) for r in sub]
    ax.plot(xs, [float(r["step_ms"]) for r in sub], "o-", label="train step (ms, median)")
    if sub:
      a, b = float(sub[0]["fit_slope_ms"]), float(sub[0]["fit_intercept_ms"])
      ax.plot(xs, [a * x + b for x in xs], "--", color="gray",
              label=f"linear fit, R² = {float(sub[0]['fit_r2']):.3f}")
    twin = ax.twinx()
    twin.plot(xs, [float(r["preprocess_s"]) for r in sub], "s:", color="tab:orange", label="preprocessing (s)")
    twin.set_ylabel("preprocessing s", color="tab:orange")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms per iteration")
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
  backend = rows[0]["backend"] if rows else ""
  fig.suptitle(f"Fig. 6 — efficiency on {dataset} ({backend})", fontsize=11)
  fig.tight_layout()
  save_figure(fig, path)


def main(argv=None) -> int:
  p = figure_parser(__doc__, seeds=False)
  p.add_argument("--steps", type=int, default=20)
  args, base, out = parse_figure_args(p, argv)
  run(base, out, steps=args.steps, progress=not args.no_progress, cache_dir=args.cache_dir)
  print(f"wrote {out / 'fig6.png'} and {out / 'fig6.csv'}")
  return 0


if __name__ == "__main__":
  from xplo_jax.errors import cli_main
  sys.exit(cli_main(main))
