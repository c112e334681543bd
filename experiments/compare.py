"""The paper's comparison (Tables 1–4) on one dataset: every model, same split, same evaluator.

  python experiments/compare.py --dataset NAME [--data-dir D] [--models m1,m2,...] [--seeds N]
                                [--out DIR] [section.field=value ...]

Trains (or fits) each requested model — default: all of ``VARIANTS`` — with the
shared loop on the same split and scores it with the same full-ranking evaluator,
then writes under ``runs/compare-<dataset>/``:

* ``table1.md`` / ``table1.csv``: dataset statistics (Table 1), per split too;
* ``tables.md``: Tables 2–4 (Recall@20, NDCG@20, PILD@20; mean ± std over seeds when
  N > 1), the train time and epochs per model, and the protocol;
* ``table2_recall@20.csv``, ``table3_ndcg@20.csv``, ``table4_pild@20.csv``;
* ``results.csv``: one row per (model, seed) with every metric.

Finished points (a ``final.json`` written for the same config) are reused, an
interrupted one resumes from its checkpoint. Overrides after the options apply to
every model (e.g. ``train.epochs=200``). Seeds vary the model's initialization and
training randomness (``train.seed``); the split is fixed (``data.split_seed``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from experiments.common import mean_std, run_point, write_csv  # noqa: E402
from xplo_jax.config import DATASETS, Config, apply_overrides  # noqa: E402
from xplo_jax.errors import cli_main  # noqa: E402
from xplo_jax.fileio import atomic_write_text  # noqa: E402

log = logging.getLogger("compare")

# The paper: "We optimize all models with the Adam optimizer, where the batch size is fixed at 512" and
# lr 0.001. A batch of the shared loop is a set of users; for the pairwise models that is many more
# (user, item) instances than 512, so they take smaller user batches to get a comparable number of
# updates per epoch: NCF 32 users (× their positives × 5), NGCF/LightGCN 128 users × 32 triples.
_PAIRWISE = ("train.batch_size=32",)
_BPR = ("train.batch_size=128",)

# variant -> (label, model name, overrides). The XploVAE ablations are configurations of one model.
VARIANTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ncf": ("NCF (NeuMF)", "neumf", _PAIRWISE),
    "multvae": ("Mult-VAE", "multvae", ()),
    "inhmf": ("INH-MF", "inhmf", ()),
    "ngcf": ("NGCF", "ngcf", _BPR),
    "tjp": ("T(J&P) (reconstruction)", "tjp", ()),
    "xplovae": ("XploVAE", "xplovae", ()),
    "xplovae-1st": ("XploVAE-1st (first order only)", "xplovae", ("model.orders=1",)),
    "xplovae-noconv": ("XploVAE w/o graph convolution", "xplovae", ("model.conv_layers=1",)),
    "xplovae-uniform": ("XploVAE, uniform negatives", "xplovae", ("train.negatives=uniform",)),
    "xplovae-full": ("XploVAE, full likelihood", "xplovae", ("train.negatives=full",)),
    "neumf-pre": ("NeuMF (pretrained GMF+MLP)", "neumf-pre", _PAIRWISE),
    "ease": ("EASE", "ease", ()),
    "lightgcn": ("LightGCN", "lightgcn", _BPR + ("baseline.gcn_reg=1e-4",)),
    "itemknn": ("ItemKNN", "itemknn", ()),
    "popularity": ("Popularity", "popularity", ()),
}
PAPER = ("ncf", "multvae", "inhmf", "ngcf", "tjp", "xplovae")          # the rows of the paper's Tables 2–4
TABLES = (("2", "recall@20", "Recall@20"), ("3", "ndcg@20", "NDCG@20"), ("4", "pild@20", "PILD@20"))


def variant_config(base: Config, variant: str, seed: int) -> Config:
  label, model, overrides = VARIANTS[variant]
  return apply_overrides(base, [f"model.name={model}", f"train.seed={seed}", *overrides]).validate()


def fmt(values: list[float], digits: int = 4) -> str:
  m, s = mean_std(values)
  return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def dataset_table(split) -> tuple[str, list[dict]]:
  s = split.stats()
  rows = [{"part": "all", "users": s["users"], "items": s["items"], "interactions": s["interactions"],
           "density": s["density"]}]
  rows += [{"part": p, "users": s[p]["users"], "items": s[p]["items"], "interactions": s[p]["interactions"],
            "density": s[p]["density"]} for p in ("train", "valid", "test")]
  md = ["| | users | items | interactions | density |", "|---|---|---|---|---|"]
  md += [f"| {r['part']} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} | {100 * r['density']:.2f}% |"
         for r in rows]
  return "\n".join(md), rows


def render(dataset: str, cfg: Config, results: dict[str, list[dict]], table1: str, seeds: int) -> str:
  d = cfg.data
  out = [f"# Comparison on {dataset}", "",
         f"Protocol: per-user split {1 - d.test_frac:.0%} train / {d.test_frac:.0%} test, {d.valid_frac:.0%} of "
         f"each user's train part → validation (split seed {d.split_seed}); positives: ratings ≥ "
         f"{d.rating_threshold:g} (Taobao: {'/'.join(d.behaviors)}), {d.min_user_interactions}-core. Full ranking "
         "over all items, the user's train and validation items excluded at test time; iterative models keep the "
         f"checkpoint with the best validation {cfg.eval.select_metric.upper()}. Recall@K = hits / min(K, |I_u|) "
         "(normalized, as Mult-VAE); PILD@K = mean pairwise (1 − Jaccard) of the top K, Jaccard on train user "
         f"sets. {seeds} seed(s) of model initialization and training (`train.seed` 0..{seeds - 1}); "
         + ("mean ± sample std." if seeds > 1 else "one run each."), "",
         "T(J&P) is a labelled reconstruction of Nakatsuji et al. (CIKM 2010) from its abstract (its full text "
         "was not found): see BUILD_NOTES.md.", "", "## Table 1: dataset", "", table1, ""]
  order = [v for v in VARIANTS if v in results]
  for num, key, title in TABLES:
    out += [f"## Table {num}: {title}", "", f"| model | {title} |", "|---|---|"]
    for v in order:
      bold = v in PAPER
      name = f"**{VARIANTS[v][0]}**" if bold else VARIANTS[v][0]
      out.append(f"| {name} | {fmt([r['test'][key] for r in results[v]])} |")
    out.append("")
  out += ["## All metrics, train time and epochs", "",
          "| model | Recall@20 | NDCG@20 | PILD@20 | Recall@50 | NDCG@50 | coverage@20 | epochs | wall s (train + eval) |",
          "|---|---|---|---|---|---|---|---|---|"]
  for v in order:
    rs = results[v]
    out.append(f"| {VARIANTS[v][0]} | " + " | ".join(fmt([r["test"][k] for r in rs]) for k in
               ("recall@20", "ndcg@20", "pild@20", "recall@50", "ndcg@50", "coverage@20"))
               + f" | {fmt([float(r['epochs']) for r in rs], 0)} | {fmt([r['wall_s'] for r in rs], 1)} |")
  out += ["", "Bold rows are the models of the paper's Tables 2–4; the others are the ablations of Fig. 5 "
          "and the simple anchors (EASE, LightGCN, ItemKNN, popularity).", ""]
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="synthetic", choices=DATASETS)
  p.add_argument("--data-dir", default=None)
  p.add_argument("--models", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
  p.add_argument("--seeds", type=int, default=1)
  p.add_argument("--out", default=None, help="default: runs/compare-<dataset>")
  p.add_argument("--cache-dir", default=None, help="preprocessed shards (default: runs/cache)")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("overrides", nargs="*", help="section.field=value applied to every model")
  args = p.parse_args(argv)
  models = [m.strip() for m in args.models.split(",") if m.strip()]
  unknown = [m for m in models if m not in VARIANTS]
  if unknown:
    from xplo_jax.errors import ConfigError
    raise ConfigError(f"--models: unknown {unknown}; choose from {', '.join(VARIANTS)}")
  base = apply_overrides(Config(), list(args.overrides))
  base = apply_overrides(base, {"data.dataset": args.dataset, "data.data_dir": args.data_dir}).validate()

  from xplo_jax.data import dataset_name
  from xplo_jax.preprocess import prepare_cached
  name = dataset_name(base.data)
  out = Path(args.out) if args.out else REPO / "runs" / f"compare-{name}"
  out.mkdir(parents=True, exist_ok=True)
  split, data = prepare_cached(base, Path(args.cache_dir) if args.cache_dir else REPO / "runs" / "cache",
                               progress=not args.no_progress)
  table1, rows1 = dataset_table(split)
  atomic_write_text(out / "table1.md", f"# Table 1: {name}\n\n{table1}\n")
  write_csv(out / "table1.csv", rows1)

  results: dict[str, list[dict]] = {}
  long_rows = []
  t0 = time.perf_counter()
  points = [(m, s) for m in models for s in range(args.seeds)]
  from tqdm.auto import tqdm
  for m, s in tqdm(points, desc="compare", unit="run", disable=args.no_progress, dynamic_ncols=True):
    cfg = variant_config(base, m, s)
    final = run_point(cfg, out / m / f"seed{s}", data, progress=not args.no_progress)
    results.setdefault(m, []).append(final)
    long_rows.append({"variant": m, "label": VARIANTS[m][0], "model": VARIANTS[m][1], "seed": s,
                      "epochs": final["epochs"], "best_epoch": final["best_epoch"], "train_s": final["wall_s"],
                      **{k: v for k, v in sorted(final["test"].items())}})
    write_csv(out / "results.csv", long_rows)
  for num, key, title in TABLES:
    rows = []
    for m in results:
      mean, std = mean_std([r["test"][key] for r in results[m]])
      rows.append({"variant": m, "label": VARIANTS[m][0], "mean": mean, "std": std, "n": len(results[m])})
    write_csv(out / f"table{num}_{key}.csv", rows)
  atomic_write_text(out / "tables.md", render(name, base, results, table1, args.seeds))
  print((out / "tables.md").read_text())
  print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main))
