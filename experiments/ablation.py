"""Fig. 5: XploVAE against its ablations — grouped bars of Recall@20 and NDCG@20.

  python experiments/ablation.py --dataset ml-100k --data-dir ../shared/data [--seeds 3] [--out DIR]
                                 [--runs-dir DIR] [section.field=value ...]

The variants are configurations of the one model (``compare.VARIANTS``): first-order
only (``model.orders=1``), no graph convolution (``model.conv_layers=1``), uniform
negatives and the full likelihood (``train.negatives=uniform|full``). The runs are
the comparison's own (``<runs-dir>/<variant>/seed<s>``, default
``<out>/compare``), so the bars and Tables 2–4 come from the same checkpoints.
Writes ``fig5.png`` and ``fig5.csv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from experiments.common import (errorbar_rows, figure_parser, parse_figure_args, run_point,  # noqa: E402
                                save_figure, write_csv)

VARIANTS = ("xplovae", "xplovae-1st", "xplovae-noconv", "xplovae-uniform", "xplovae-full")
METRICS = ("recall@20", "ndcg@20")


def run(base, out: Path, *, seeds: int = 1, runs_dir: Path | None = None, progress: bool = True,
        cache_dir=None) -> list[dict]:
  from experiments.compare import VARIANTS as ALL, variant_config
  from xplo_jax.preprocess import prepare_cached
  runs_dir = runs_dir or out / "compare"
  _, data = prepare_cached(base, Path(cache_dir) if cache_dir else REPO / "runs" / "cache", progress=progress)
  rows = []
  for v in VARIANTS:
    for seed in range(seeds):
      final = run_point(variant_config(base, v, seed), runs_dir / v / f"seed{seed}", data, progress=progress)
      rows.append({"variant": v, "label": ALL[v][0], "seed": seed,
                   **{m: final["test"][m] for m in METRICS}, "pild@20": final["test"]["pild@20"],
                   "epochs": final["epochs"]})
      write_csv(out / "fig5.csv", rows)
  plot(rows, out / "fig5.png", dataset=base.data.dataset)
  return rows


def plot(rows: list[dict], path: Path, dataset: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  labels = list(dict.fromkeys(r["label"] for r in rows))
  fig, ax = plt.subplots(figsize=(8.5, 3.6))
  width = 0.8 / len(labels)
  for i, lab in enumerate(labels):
    sub = [r for r in rows if r["label"] == lab]
    means, stds = [], []
    for m in METRICS:
      e = errorbar_rows(sub, "label", m)[0]
      means.append(e["mean"])
      stds.append(e["std"])
    ax.bar(np.arange(len(METRICS)) + (i - (len(labels) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
           label=lab)
  ax.set_xticks(np.arange(len(METRICS)))
  ax.set_xticklabels([m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in METRICS])
  ax.set_ylabel("test")
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
  ax.grid(axis="y", alpha=0.3)
  n_seeds = len({r["seed"] for r in rows})
  ax.set_title(f"Fig. 5 — ablations on {dataset} (mean ± std over {n_seeds} seed(s))", fontsize=10)
  save_figure(fig, path)


def main(argv=None) -> int:
  p = figure_parser(__doc__)
  p.add_argument("--runs-dir", default=None, help="the comparison's run folders (default <out>/compare)")
  args, base, out = parse_figure_args(p, argv)
  run(base, out, seeds=args.seeds, runs_dir=Path(args.runs_dir) if args.runs_dir else None,
      progress=not args.no_progress, cache_dir=args.cache_dir)
  print(f"wrote {out / 'fig5.png'} and {out / 'fig5.csv'}")
  return 0


if __name__ == "__main__":
  from xplo_jax.errors import cli_main
  sys.exit(cli_main(main))
