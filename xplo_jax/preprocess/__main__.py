"""Preprocessing command line.

  python -m xplo_jax.preprocess --dataset NAME [--data-dir D] --out DIR [--memory-gb G]
                                [--overwrite] [section.field=value ...]
  python -m xplo_jax.preprocess inspect DIR --user U [--original-id]

The first writes the padded subgraph shards of the dataset's split into DIR
(resuming the parts already complete and verified) and prints the shard summary
as JSON. ``inspect`` prints one user's A₁, A₂, label counts and stratum counts as
JSON (``--user`` is the contiguous user index, or the original id with
``--original-id``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from xplo_jax.config import DATASETS, Config, apply_overrides
from xplo_jax.errors import ConfigError, cli_main


def summarize(data) -> dict:
  """Shard summary: sizes, widths, label totals, |A₁| and |A₂| statistics, bytes, timing."""
  totals = np.zeros(5, np.int64)
  a1, a2 = [], []
  for i in range(len(data.shards)):
    a = data._shard_arrays(i)
    totals += np.asarray(a["label_counts"]).sum(axis=0)
    a1.append(np.asarray(a["a1_len"]))
    a2.append(np.asarray(a["a2_len"]))
  a1, a2 = np.concatenate(a1), np.concatenate(a2)
  m = data.manifest
  cells = max(1, data.n_users * data.n_items)
  return {
      "folder": str(data.root), "fingerprint": m["fingerprint"], "code_version": m["code_version"],
      "users": data.n_users, "items": data.n_items, "shards": len(data.shards),
      "width1": data.width1, "width2": data.width2, "knn": m["knn"], "knn_requested": m["knn_requested"],
      "proximity_backend": m["proximity_backend"],
      "label_fractions": {str(k): float(totals[k] / cells) for k in range(5)},
      "a1_len": {"mean": float(a1.mean()), "max": int(a1.max())},
      "a2_len": {"mean": float(a2.mean()), "max": int(a2.max()), "zero_users": int((a2 == 0).sum())},
      "bytes": int(sum(e["bytes"] for e in m["files"].values())),
      "timing_s": {k: round(v, 3) for k, v in m["timing"].items()},
  }


def inspect_user(data, user: int) -> dict:
  if not 0 <= user < data.n_users:
    raise ConfigError(f"--user {user}: expected a user index in [0, {data.n_users})")
  b = data.batch(np.array([user]))
  a1 = b["a1_ids"][0, :b["a1_len"][0]]
  a2 = b["a2_ids"][0, :b["a2_len"][0]]
  counts = np.bincount(b["labels"][0], minlength=5)
  item_ids = data.split.item_ids
  return {
      "user": int(user), "user_id": data.split.user_ids[user].item(),
      "a1": a1.tolist(), "a2": a2.tolist(),
      "a1_item_ids": [item_ids[i].item() for i in a1], "a2_item_ids": [item_ids[i].item() for i in a2],
      "label_counts": {str(k): int(c) for k, c in enumerate(counts)},
      "strata": {"row1": b["strata"][0, 0].tolist(), "row2": b["strata"][0, 1].tolist(),
                 "q_classes": ["Q=1", "Q=3", "Q=5", "Q>=7"]},
  }


def _inspect(argv) -> int:
  p = argparse.ArgumentParser(prog="python -m xplo_jax.preprocess inspect")
  p.add_argument("dir")
  p.add_argument("--user", required=True)
  p.add_argument("--original-id", action="store_true", help="--user is an original user id")
  p.add_argument("--no-verify", action="store_true", help="skip the checksum pass")
  args = p.parse_args(argv)
  from xplo_jax.preprocess import open_shards
  data = open_shards(args.dir, verify=not args.no_verify)
  if args.original_id:
    ids = data.split.user_ids
    hit = np.flatnonzero(ids.astype(str) == str(args.user))
    if len(hit) == 0:
      raise ConfigError(f"--user {args.user}: no such original user id in {args.dir}")
    user = int(hit[0])
  else:
    try:
      user = int(args.user)
    except ValueError:
      raise ConfigError(f"--user {args.user!r}: expected an integer index (or pass --original-id)") from None
  json.dump(inspect_user(data, user), sys.stdout, indent=2)
  sys.stdout.write("\n")
  return 0


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "inspect":
    return _inspect(argv[1:])
  p = argparse.ArgumentParser(prog="python -m xplo_jax.preprocess", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="synthetic", choices=DATASETS)
  p.add_argument("--data-dir", default=None)
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--memory-gb", type=float, default=None, help="working-memory budget (default 4)")
  p.add_argument("--overwrite", action="store_true", help="replace output of another config in --out")
  p.add_argument("--backend", default="auto", choices=("auto", "dense", "sparse"))
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("overrides", nargs="*", help="section.field=value, e.g. preprocess.knn=100")
  args = p.parse_args(argv)
  cfg = apply_overrides(Config(), list(args.overrides))
  cfg = apply_overrides(cfg, {"data.dataset": args.dataset, "data.data_dir": args.data_dir})
  if args.memory_gb is not None:
    cfg = apply_overrides(cfg, {"preprocess.memory_gb": args.memory_gb})
  cfg.validate()
  from xplo_jax.data import load_split
  from xplo_jax.preprocess import preprocess
  import dataclasses
  split = load_split(cfg.data)
  data = preprocess(split, cfg.preprocess, Path(args.out), overwrite=args.overwrite,
                    progress=not args.no_progress, backend=args.backend,
                    extra={"data": dataclasses.asdict(cfg.data)})
  json.dump({"dataset": split.stats(), "shards": summarize(data)}, sys.stdout, indent=2)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main))
