"""Fig. 4: Recall@20 against the latent size P, the proximity threshold c₂ and the neighbourhood size Kₙ.

  python experiments/sensitivity.py --dataset ml-100k --data-dir ../shared/data [--seeds 3] [--out DIR]
                                    [--params latent_dim,threshold,knn] [section.field=value ...]

Each point is one XploVAE run through the shared path (``compare.run_point`` →
``train_and_evaluate``), the other two parameters at their defaults (P = 200,
c₂ = 0.9, Kₙ = 300). Kₙ values ≥ |V| are clamped by the preprocessing to |V| − 1
and the figure and CSV say so. Writes ``fig4.png`` and ``fig4.csv`` (one row per
(parameter, value, seed)) under ``--out`` (default ``runs/paper-<dataset>``);
finished points are reused.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from experiments.common import (errorbar_rows, figure_parser, parse_figure_args, point_dir,  # noqa: E402
                                run_xplovae_point, save_figure, write_csv)

# The paper's grids (§5.2.2, Fig. 4).
GRIDS = {
    "latent_dim": ("model.latent_dim", (50, 100, 200, 300, 400), "latent size P"),
    "threshold": ("preprocess.threshold", (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), "proximity threshold c₂ (quantile)"),
    "knn": ("preprocess.knn", (50, 100, 200, 300, 400), "neighbourhood size Kₙ"),
}


def run(base, out: Path, *, seeds: int = 1, params=tuple(GRIDS), progress: bool = True, cache_dir=None,
        quick: bool = False) -> list[dict]:
  """Trains every grid point (reusing finished ones); returns and writes the rows of fig4.csv.

  ``quick`` keeps the first and last value of each grid (for smoke tests).
  """
  rows = []
  for name in params:
    key, values, _ = GRIDS[name]
    for value in (values[0], values[-1]) if quick else values:
      for seed in range(seeds):
        section, field = key.split(".")
        default = getattr(getattr(base, section), field) == value
        # The default point is the comparison's XploVAE run (same config): reuse it, don't retrain.
        workdir = out / "compare" / "xplovae" / f"seed{seed}" if default else point_dir(out, "fig4", f"{name}={value}",
                                                                                          seed)
        res = run_xplovae_point(base, [f"{key}={value}"], workdir, seed, progress=progress, cache_dir=cache_dir)
        rows.append({"param": name, "value": value, "effective": res["effective"].get(name, value), "seed": seed,
                     "recall@20": res["test"]["recall@20"], "ndcg@20": res["test"]["ndcg@20"],
                     "epochs": res["epochs"], "wall_s": res["wall_s"]})
        write_csv(out / "fig4.csv", rows)
  plot(rows, out / "fig4.png", dataset=base.data.dataset)
  return rows


def plot(rows: list[dict], path: Path, dataset: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [n for n in GRIDS if any(r["param"] == n for r in rows)]
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False, layout="constrained")
  for ax, name in zip(axes[0], names):
    pts = errorbar_rows([r for r in rows if r["param"] == name], "value", "recall@20")
    xs = [p["value"] for p in pts]
    ax.errorbar(xs, [p["mean"] for p in pts], yerr=[p["std"] for p in pts], marker="o", capsize=3)
    clamped = [r for r in rows if r["param"] == name and float(r["effective"]) != float(r["value"])]
    title = GRIDS[name][2]
    if clamped:
      eff = sorted({int(float(r["effective"])) for r in clamped})
      title += f"\n(values ≥ |V| clamped to {eff})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(name)
    ax.set_ylabel("Recall@20 (test)")
    ax.grid(alpha=0.3)
  n_seeds = len({r["seed"] for r in rows})
  fig.suptitle(f"Fig. 4 — sensitivity on {dataset} (mean ± std over {n_seeds} seed(s))", fontsize=11)
  save_figure(fig, path)


def main(argv=None) -> int:
  p = figure_parser(__doc__)
  p.add_argument("--params", default=",".join(GRIDS))
  args, base, out = parse_figure_args(p, argv)
  run(base, out, seeds=args.seeds, params=tuple(args.params.split(",")), progress=not args.no_progress,
      cache_dir=args.cache_dir)
  print(f"wrote {out / 'fig4.png'} and {out / 'fig4.csv'}")
  return 0


if __name__ == "__main__":
  from xplo_jax.errors import cli_main
  sys.exit(cli_main(main))
