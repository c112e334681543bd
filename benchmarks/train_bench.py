"""Train-step benchmarks (issue 3): step/epoch time, peak RSS, GFLOP/s, compiled memory.

  python benchmarks/train_bench.py [--cases ml-100k,synthetic-ml-10m] [--steps 5] [--knn-sweep]
                                   [section.field=value ...]

Per case, in a fresh process: load → split → preprocess (cached under
runs/cache), build XploVAE, compile the one jitted train step, time ``--steps``
steps (median, after compilation), and report the compiled step's FLOPs
(``cost_analysis``) and memory (``memory_analysis``), the achieved GFLOP/s against
this machine's float32 matmul peak (a plain 4096² matmul), and the peak RSS. The
epoch time is measured over one full epoch where it takes under ``--max-epoch-s``
(default 120 s); above that it is the step median times the steps per epoch
(marked "est."). ``--knn-sweep`` compiles the step for several Kₙ with the
gather kernel and shows its memory stays O(B·|V|·D) as Kₙ grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

CASES = {
    "ml-100k": ["data.dataset=ml-100k", f"data.data_dir={SHARED}"],
    "synthetic-ml-100k": ["data.dataset=synthetic", "data.synthetic_preset=ml-100k"],
    "synthetic-sparse-small": ["data.dataset=synthetic", "data.synthetic_preset=sparse-small"],
    "synthetic-ml-10m": ["data.dataset=synthetic", "data.synthetic_preset=ml-10m"],
    "synthetic-alibaba@0.1": ["data.dataset=synthetic", "data.synthetic_preset=alibaba", "data.synthetic_scale=0.1"],
    "synthetic-alibaba": ["data.dataset=synthetic", "data.synthetic_preset=alibaba"],
}


def matmul_peak_gflops(n: int = 4096, reps: int = 5) -> float:
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best / 1e9


def bench_case(overrides: list[str], steps: int, max_epoch_s: float) -> dict:
  from experiments.common import time_train_step
  from xplo_jax.config import Config, apply_overrides
  from xplo_jax.preprocess import prepare_cached
  cfg = apply_overrides(Config(), overrides).validate()
  t0 = time.perf_counter()
  _, data = prepare_cached(cfg, REPO / "runs" / "cache", progress=False)
  prep_s = time.perf_counter() - t0
  r = time_train_step(cfg, data, steps, max_epoch_s=max_epoch_s)
  return {"users": data.n_users, "items": data.n_items, "knn": data.manifest["knn"], "batch": cfg.train.batch_size,
          "preprocess_s": prep_s, **r, "gflops": r["gflop_per_step"] / r["step_s"],
          "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def knn_sweep(overrides: list[str], knns=(50, 100, 200, 300)) -> list[dict]:
  import jax
  import jax.numpy as jnp
  from xplo_jax.preprocess import prepare_cached as prepare_data
  from xplo_jax import sharding as S
  from xplo_jax.config import Config, apply_overrides
  from xplo_jax.recipes import get_recipe
  from xplo_jax.train import create_state, train_step
  rows = []
  for k in knns:
    cfg = apply_overrides(Config(), overrides + [f"preprocess.knn={k}", "model.conv_kernel=gather"]).validate()
    _, data = prepare_data(cfg, REPO / "runs" / "cache", progress=False)
    recipe = get_recipe("xplovae")
    mesh = S.make_mesh()
    model, gd, params, rest, opt = create_state(cfg, data, recipe, mesh)
    arrays = data.all_users()
    b = {f: arrays[f][:cfg.train.batch_size] for f in recipe.batch_fields()}
    b["valid"] = jnp.ones(len(b["a1_ids"]), bool)
    c = train_step.lower(recipe, gd, recipe.static(cfg), params, rest, opt, S.put_batch(b, mesh),
                         jnp.int32(0), jax.random.PRNGKey(0)).compile()
    mem = c.memory_analysis()
    bvd = cfg.train.batch_size * data.n_items * cfg.model.embed_dim * 4
    rows.append({"knn": data.manifest["knn"], "temp_mb": mem.temp_size_in_bytes / 2 ** 20,
                 "B*V*D*4_mb": bvd / 2 ** 20, "temp_over_BVD": mem.temp_size_in_bytes / bvd,
                 "B*N*(Kn+1)*D*4_mb (materialized, never built)":
                     cfg.train.batch_size * (data.width1 + data.width2 + 7 * 64) * (k + 1) * 3 * 4 / 2 ** 20})
  return rows


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cases", default="ml-100k,synthetic-ml-10m")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--max-epoch-s", type=float, default=120.0)
  p.add_argument("--knn-sweep", action="store_true")
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("overrides", nargs="*")
  args = p.parse_args()
  if args.worker:                                   # one case in this (fresh) process
    if args.worker == "peak":
      print(json.dumps({"matmul_peak_gflops": matmul_peak_gflops()}))
    elif args.worker == "knn-sweep":
      print(json.dumps(knn_sweep(CASES["ml-100k"] + args.overrides)))
    else:
      print(json.dumps(bench_case(CASES[args.worker] + args.overrides, args.steps, args.max_epoch_s)))
    return 0

  def worker(name):
    cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps),
           "--max-epoch-s", str(args.max_epoch_s), *args.overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode:
      return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])

  peak = worker("peak")["matmul_peak_gflops"]
  print(f"float32 matmul peak (4096², jit): {peak:.1f} GFLOP/s")
  cols = ["case", "users", "items", "knn", "conv_kernel", "batch", "steps_per_epoch", "compile_s", "step_s",
          "epoch_s", "gflop_per_step", "gflops", "pct_peak", "temp_mb", "peak_rss_gb", "backend"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for name in args.cases.split(","):
    if name == "ml-100k" and not (SHARED / "ml-100k" / "u.data").is_file():
      print(f"| {name} | skipped: {SHARED}/ml-100k not found |")
      continue
    r = worker(name)
    if "error" in r:
      print(f"| {name} | error: {r['error']} |")
      continue
    r["case"], r["pct_peak"] = name, 100 * r["gflops"] / peak
    fmt = lambda c: (f"{r[c]:.3g}" + (" est." if c == "epoch_s" and r["epoch_kind"] == "est." else "")
                     if isinstance(r[c], float) else str(r[c]))
    print("| " + " | ".join(fmt(c) for c in cols) + " |", flush=True)
  if args.knn_sweep:
    rows = worker("knn-sweep")
    if isinstance(rows, dict):
      print("knn sweep error:", rows.get("error"))
      return 1
    print("\nCompiled train-step memory vs Kₙ (ML-100K, gather kernel):")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
      print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
