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

from xplo_jax.config import Config, apply_overrides, config_to_dict  # noqa: E402
from xplo_jax.fileio import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

__all__ = ["base_config", "run_point", "run_xplovae_point", "point_dir", "mean_std", "errorbar_rows", "write_csv",
           "read_csv", "save_figure"]


def base_config(dataset: str, data_dir: Optional[str], overrides: list[str]) -> Config:
  cfg = apply_overrides(Config(), list(overrides))
  return apply_overrides(cfg, {"data.dataset": dataset, "data.data_dir": data_dir}).validate()


def _same_config(workdir: Path, cfg: Config) -> bool:
  conf = workdir / "config.json"
  want = json.loads(json.dumps(config_to_dict(cfg)))
  return conf.is_file() and json.loads(conf.read_text()).get("config") == want


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
