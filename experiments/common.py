"""Helpers shared by the experiment commands (compare, paper, sensitivity, ablation, efficiency).

Every training point goes through one path: ``run_point`` → ``train_and_evaluate``,
reusing a finished point (its ``final.json`` written for the same config) and
resuming an interrupted one from its checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]

from xplo_jax.config import Config, apply_overrides, config_to_dict, result_fields  # noqa: E402
from xplo_jax.fileio import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

__all__ = ["time_train_step", "figure_parser", "parse_figure_args", "base_config", "run_point", "run_xplovae_point", "point_dir", "mean_std", "errorbar_rows", "write_csv",
           "read_csv", "save_figure"]


def figure_parser(doc: str, seeds: bool = True):
  """The options every figure command shares (dataset, data dir, out, cache, progress, overrides)."""
  import argparse
  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="synthetic")
  p.add_argument("--data-dir", default=None)
  if seeds:
    p.add_argument("--seeds", type=int, default=1)
  p.add_argument("--out", default=None, help="default: runs/paper-<dataset>")
  p.add_argument("--cache-dir", default=None, help="preprocessed shards (default: runs/cache)")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("overrides", nargs="*", help="section.field=value applied to every run")
  return p


def parse_figure_args(parser, argv):
  """(args, base config, output folder) from a ``figure_parser``."""
  from xplo_jax.data import dataset_name
  args = parser.parse_args(argv)
  base = base_config(args.dataset, args.data_dir, args.overrides)
  out = Path(args.out) if args.out else REPO / "runs" / f"paper-{dataset_name(base.data)}"
  return args, base, out


def base_config(dataset: str, data_dir: Optional[str], overrides: list[str]) -> Config:
  cfg = apply_overrides(Config(), list(overrides))
  return apply_overrides(cfg, {"data.dataset": dataset, "data.data_dir": data_dir}).validate()


def _same_config(workdir: Path, cfg: Config) -> bool:
  """The run in ``workdir`` was made with ``cfg`` (execution-only settings aside)."""
  conf = workdir / "config.json"
  want = result_fields(json.loads(json.dumps(config_to_dict(cfg))))
  return conf.is_file() and result_fields(json.loads(conf.read_text()).get("config", {})) == want


def run_point(cfg: Config, workdir: Path, data, progress: bool = True) -> dict:
  """final.json of one training point: reused when present for the same config, else trained."""
  from xplo_jax.train import ckpt_exists, train_and_evaluate
  final = workdir / "final.json"
  if final.is_file() and _same_config(workdir, cfg):
    return json.loads(final.read_text())
  train_and_evaluate(cfg, workdir, data, resume=ckpt_exists(workdir), progress=progress)
  return json.loads(final.read_text())


def point_dir(out: Path, figure: str, name: str, seed: int) -> Path:
  return out / figure / name / f"seed{seed}"


def run_xplovae_point(base: Config, overrides: list[str], workdir: Path, seed: int, *, progress: bool = True,
                      cache_dir=None) -> dict:
  """One XploVAE point with ``overrides`` (preprocessing ones included): final.json + effective sizes.

  Returns final.json's content with ``effective`` = {"knn": Kₙ after clamping, "n_items": |V|}.
  """
  cfg = apply_overrides(base, ["model.name=xplovae", f"train.seed={seed}", *overrides]).validate()
  point = workdir / "point.json"
  final = workdir / "final.json"
  if final.is_file() and point.is_file() and _same_config(workdir, cfg):
    return {**json.loads(final.read_text()), "effective": json.loads(point.read_text())}
  from xplo_jax.preprocess import prepare_cached
  _, data = prepare_cached(cfg, Path(cache_dir) if cache_dir else REPO / "runs" / "cache", progress=progress)
  res = run_point(cfg, workdir, data, progress=progress)
  eff = {"knn": int(data.manifest["knn"]), "n_items": int(data.n_items)}
  atomic_write_json(point, eff)
  return {**res, "effective": eff}


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  m = sum(values) / len(values)
  s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
  return m, s


def errorbar_rows(rows: list[dict], by: str, metric: str) -> list[dict]:
  """[{by-value, mean, std, n}] over the rows grouped by ``by`` (in first-seen order)."""
  groups: dict = {}
  for r in rows:
    groups.setdefault(r[by], []).append(float(r[metric]))
  out = []
  for k, vals in groups.items():
    m, s = mean_std(vals)
    out.append({by: k, "mean": m, "std": s, "n": len(vals)})
  return out


def write_csv(path: Path, rows: list[dict]) -> None:
  buf = io.StringIO()
  fields = list(rows[0]) if rows else ["empty"]
  w = csv.DictWriter(buf, fieldnames=fields)
  w.writeheader()
  w.writerows(rows)
  atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def save_figure(fig, path: Path, dpi: int = 110) -> None:
  """Saves a matplotlib figure atomically as PNG, then closes it."""
  import matplotlib.pyplot as plt
  path = Path(path)
  with atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)


def time_train_step(cfg: Config, data, steps: int, *, max_epoch_s: float = 0.0) -> dict:
  """Compiles the one train step on ``data`` and times ``steps`` steps after compilation.

  Host batch assembly and transfer are outside the timed region (they overlap with
  device work in training). Returns the median step time, the compile time, the
  compiled step's FLOPs (``cost_analysis``) and memory (``memory_analysis``), and the
  epoch time: measured over one full epoch when that takes under ``max_epoch_s``,
  else the median times the steps per epoch (``epoch_kind`` 'est.').
  """
  import time
  import jax
  import jax.numpy as jnp
  import numpy as np
  from xplo_jax import sharding as S
  from xplo_jax.recipes import get_recipe
  from xplo_jax.train import create_state, epoch_order, pad_batches, train_step
  recipe = get_recipe(cfg.model.name)
  mesh = S.make_mesh()
  model, gd, params, rest, opt = create_state(cfg, data, recipe, mesh)
  st = recipe.static(cfg)
  arrays = data.all_users()
  arrays["users"] = np.arange(data.n_users, dtype=np.int32)
  batches = list(pad_batches(epoch_order(0, 0, data.n_users), cfg.train.batch_size))

  def host(i):
    users, valid = batches[i % len(batches)]
    b = {k: arrays[k][users] for k in recipe.batch_fields()}
    b["valid"] = valid
    return S.put_batch(b, mesh)

  key = jax.random.PRNGKey(0)
  b0 = host(0)
  t = time.perf_counter()
  compiled = train_step.lower(recipe, gd, st, params, rest, opt, b0, jnp.int32(0), key).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  mem = compiled.memory_analysis()
  params, opt, m = train_step(recipe, gd, st, params, rest, opt, b0, jnp.int32(0), key)
  jax.block_until_ready(m)
  times = []
  for i in range(steps):
    b = host(i + 1)
    jax.block_until_ready(b)
    t = time.perf_counter()
    params, opt, m = train_step(recipe, gd, st, params, rest, opt, b, jnp.int32(i + 1), key)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  step_s = float(np.median(times))
  epoch_s, kind = step_s * len(batches), "est."
  if 0 < step_s * len(batches) <= max_epoch_s:
    t = time.perf_counter()
    for i in range(len(batches)):
      params, opt, m = train_step(recipe, gd, st, params, rest, opt, host(i), jnp.int32(steps + 1 + i), key)
    jax.block_until_ready(m)
    epoch_s, kind = time.perf_counter() - t, "measured"
  flops = float(cost.get("flops", 0.0))
  return {"conv_kernel": getattr(model, "conv_kernel", ""), "width1": data.width1, "width2": data.width2,
          "steps_per_epoch": len(batches), "compile_s": compile_s, "step_s": step_s, "step_ms": 1000 * step_s,
          "epoch_s": epoch_s, "epoch_kind": kind, "gflop_per_step": flops / 1e9,
          "temp_mb": mem.temp_size_in_bytes / 2 ** 20, "args_mb": mem.argument_size_in_bytes / 2 ** 20,
          "backend": jax.default_backend(), "loss": float(m["loss"])}
