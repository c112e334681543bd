"""``python -m xplo_jax.data stats --dataset NAME [--data-dir D] [section.field=value ...]``

Prints JSON: users, items, interactions and density after filtering, and per split.
"""

from __future__ import annotations

import argparse
import json
import sys

from xplo_jax.config import DATASETS, Config, apply_overrides
from xplo_jax.errors import cli_main


def add_data_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--dataset", default="synthetic", choices=DATASETS)
  p.add_argument("--data-dir", default=None, help="the dataset's folder, or a parent holding it")
  p.add_argument("overrides", nargs="*", help="section.field=value, e.g. data.min_user_interactions=5")


def config_from_args(args) -> Config:
  cfg = apply_overrides(Config(), list(args.overrides))
  return apply_overrides(cfg, {"data.dataset": args.dataset, "data.data_dir": args.data_dir}).validate()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m xplo_jax.data", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  add_data_args(sub.add_parser("stats", help="dataset statistics after filtering, and per split"))
  args = parser.parse_args(argv)
  from xplo_jax.data import load_split
  cfg = config_from_args(args)
  split = load_split(cfg.data)
  out = {"dataset": args.dataset, "data_dir": args.data_dir, **split.stats()}
  json.dump(out, sys.stdout, indent=2)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(cli_main(main))
