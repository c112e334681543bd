"""Train and evaluate one model end to end.

  python experiments/run.py [--dataset NAME] [--data-dir D] [--model M] [--name RUN] [--resume]
                            [section.field=value ...]

load → filter → split → preprocess (reusing valid shards in the cache) → train →
evaluate, with progress bars. Writes under ``runs/<name>/``: config.json,
metrics.jsonl (per epoch), final.json (test metrics of the best checkpoint),
summary.md and checkpoints/. ``--dataset synthetic`` (the planted-cluster set
shaped like ML-100K) is the default and what ``make run`` runs.

Examples:
  python experiments/run.py                                   # the embedded default
  python experiments/run.py --dataset ml-100k --data-dir ../shared/data
  python experiments/run.py --dataset alibaba --data-dir ~/data train.negatives=uniform
  python experiments/run.py --resume --name ml-100k-xplovae  # continue a killed run
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:          # runnable from a checkout without installing
  sys.path.insert(0, str(REPO))

from xplo_jax.config import DATASETS, Config, apply_overrides  # noqa: E402
from xplo_jax.errors import cli_main  # noqa: E402

log = logging.getLogger("run")


def build_config(args) -> Config:
  cfg = apply_overrides(Config(), list(args.overrides))
  cfg = apply_overrides(cfg, {"data.dataset": args.dataset, "data.data_dir": args.data_dir})
  if args.model:
    cfg = apply_overrides(cfg, {"model.name": args.model})
  return cfg.validate()


def run_dir(runs: Path, name: str, resume: bool) -> Path:
  path = runs / name
  if resume or not (path / "config.json").exists():
    return path
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return runs / f"{name}-{stamp}"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="synthetic", choices=DATASETS)
  p.add_argument("--data-dir", default=None, help="the dataset's folder, or a parent holding it")
  p.add_argument("--model", default=None, help="model name (default: xplovae)")
  p.add_argument("--name", default=None, help="run name (default: <dataset>-<model>)")
  p.add_argument("--runs", default=str(REPO / "runs"), help="where runs are written")
  p.add_argument("--cache-dir", default=None, help="preprocessed shards cache (default: <runs>/cache)")
  p.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("overrides", nargs="*", help="section.field=value, e.g. train.epochs=50 model.latent_dim=100")
  args = p.parse_args(argv)
  cfg = build_config(args)

  from xplo_jax.data import dataset_name
  from xplo_jax.preprocess import prepare_cached
  from xplo_jax.preprocess.__main__ import summarize
  from xplo_jax.sharding import maybe_initialize_distributed
  from xplo_jax.train import train_and_evaluate
  maybe_initialize_distributed()
  import jax
  log.info("devices: %s", ", ".join(str(d) for d in jax.devices()))
  runs = Path(args.runs)
  cache = Path(args.cache_dir) if args.cache_dir else runs / "cache"
  split, data = prepare_cached(cfg, cache, progress=not args.no_progress)
  print("dataset:", json.dumps(split.stats()))
  shard = summarize(data)
  print("shards:", json.dumps({k: shard[k] for k in ("folder", "users", "items", "width1", "width2", "knn",
                                                      "label_fractions", "a2_len")}))
  name = args.name or f"{dataset_name(cfg.data)}-{cfg.model.name}"
  workdir = run_dir(runs, name, args.resume)
  result = train_and_evaluate(cfg, workdir, data, resume=args.resume, progress=not args.no_progress)
  keys = [f"{m}@{k}" for m in ("recall", "ndcg", "pild") for k in cfg.eval.ks]
  print(f"\n{cfg.model.name} on {dataset_name(cfg.data)}: best epoch {result.best_epoch} of {result.epochs}, "
        f"{result.wall_s:.1f} s")
  print("test:", "  ".join(f"{k}={result.test[k]:.4f}" for k in keys if k in result.test))
  print(f"run folder: {workdir}  (summary.md, final.json, metrics.jsonl, config.json, checkpoints/)")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main))
