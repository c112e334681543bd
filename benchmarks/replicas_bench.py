"""Seeds in one compile (issue 5): N seeds trained sequentially vs. as vmapped replicas.

  python benchmarks/replicas_bench.py [--cases xplovae-tiny,xplovae-small,multvae-tiny] [--ns 1,2,4,8]
                                      [--steps 20] [--repeats 3] [--end-to-end] [section.field=value ...]

Per case, in a fresh process: build the data (cached under runs/cache), then for
each N time ``--steps`` optimizer steps of N seeds

* sequentially: N independent states, each stepped ``--steps`` times with the one
  jitted ``train.train_step`` (N × steps dispatches), and
* as replicas: one stacked state stepped ``--steps`` times with
  ``replicas.replica_step`` (vmap over seeds, one dispatch per step).

Both loops do what the training loops do per step: build the host batch from the
seed's own epoch order (``epoch_order(seed, 0, n)``), transfer it, step; one sync
at the end. Compilation is excluded (one warm-up step each; compile times are
reported separately). Each timing is the minimum over ``--repeats`` (the machine
is shared: the minimum is the least disturbed). ``--end-to-end`` adds, for the
tiny XploVAE case, whole runs (``train.epochs=5``, evaluation every epoch, test
scoring, files) of N × ``train_and_evaluate`` vs. one ``train_replicas``, each in a
fresh process, compilation and evaluation included.

Prints Markdown tables; the machine's load average at the start and end is printed
too (read the numbers with it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_TINY = ["data.synthetic_preset=tiny", "preprocess.knn=20", "model.latent_dim=16", "model.hidden_dim=32",
         "train.batch_size=64", "eval.user_batch=128"]
CASES = {
    # The test configuration: 300 users, 200 items, P = 16, H = 32, B = 64.
    "xplovae-tiny": _TINY,
    # Synthetic ML-100K shape (943 users, 1,682 items), Kₙ = 50, P = 64, H = 200, B = 128.
    "xplovae-small": ["data.synthetic_preset=ml-100k", "preprocess.knn=50", "model.latent_dim=64",
                      "model.hidden_dim=200", "train.batch_size=128", "eval.user_batch=256"],
    # Mult-VAE on the tiny preset, H = 64, P = 16.
    "multvae-tiny": _TINY + ["model.name=multvae", "baseline.multvae_hidden=64", "baseline.multvae_latent=16"],
}


def _load() -> str:
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_case(overrides: list[str], ns: list[int], steps: int, repeats: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  from xplo_jax import sharding as S
  from xplo_jax.config import Config, apply_overrides
  from xplo_jax.preprocess import prepare_cached
  from xplo_jax.recipes import get_recipe
  from xplo_jax.replicas import init_replicas, replica_step
  from xplo_jax.train import pad_batches, create_state, epoch_order, train_step

  cfg = apply_overrides(Config(), overrides).validate()
  _, data = prepare_cached(cfg, REPO / "runs" / "cache", progress=False)
  recipe = get_recipe(cfg.model.name)
  mesh = S.make_mesh()
  static = recipe.static(cfg)
  arrays = data.all_users()
  arrays["users"] = np.arange(data.n_users, dtype=np.int32)
  B = cfg.train.batch_size
  n_max = max(ns)
  orders = {s: list(pad_batches(epoch_order(s, 0, data.n_users), B)) for s in range(n_max)}
  stacked = NamedSharding(mesh, P(None, "data"))

  def host(seed, i):
    users, valid = orders[seed][i % len(orders[seed])]
    b = {k: arrays[k][users] for k in recipe.batch_fields()}
    b["valid"] = valid
    return b

  def host_stacked(seeds, i):
    us = np.stack([orders[s][i % len(orders[s])][0] for s in seeds])
    b = {k: arrays[k][us] for k in recipe.batch_fields()}
    b["valid"] = np.stack([orders[s][i % len(orders[s])][1] for s in seeds])
    return b

  states = {s: list(create_state(apply_overrides(cfg, {"train.seed": s}), data, recipe, mesh)[1:]) for s in range(n_max)}
  gd = states[0][0]
  keys = {s: jax.random.PRNGKey(s) for s in range(n_max)}

  def seq_step(s, i, step):
    _, p, r, o = states[s]
    p, o, m = train_step(recipe, gd, static, p, r, o, S.put_batch(host(s, i), mesh), jnp.int32(step), keys[s])
    states[s][1], states[s][3] = p, o
    return m

  t = time.perf_counter()
  jax.block_until_ready(seq_step(0, 0, 0))                    # compile
  seq_compile = time.perf_counter() - t
  step_ms_1 = None
  rows = []
  for n in ns:
    seeds = list(range(n))
    best_seq = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      for s in seeds:
        for i in range(steps):
          m = seq_step(s, i, i)
      jax.block_until_ready(m)
      best_seq = min(best_seq, time.perf_counter() - t)
    reps = init_replicas(cfg, data, recipe, seeds, mesh)
    state = [reps.params, reps.opt_state]
    kstack = jnp.stack([keys[s] for s in seeds])

    def rep(i, step):
      state[0], state[1], m = replica_step(recipe, reps.graphdef, static, state[0], reps.rest, state[1],
                                           jax.device_put(host_stacked(seeds, i), stacked), jnp.int32(step),
                                           kstack, {}, rest_axis=reps.rest_axis)
      return m

    t = time.perf_counter()
    jax.block_until_ready(rep(0, 0))
    rep_compile = time.perf_counter() - t
    best_rep = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      for i in range(steps):
        m = rep(i, i)
      jax.block_until_ready(m)
      best_rep = min(best_rep, time.perf_counter() - t)
    if n == 1:
      step_ms_1 = 1e3 * best_seq / steps
    rows.append({"N": n, "sequential_s": best_seq, "replicas_s": best_rep, "speedup": best_seq / best_rep,
                 "seq_ms_per_seed_step": 1e3 * best_seq / (n * steps),
                 "rep_ms_per_seed_step": 1e3 * best_rep / (n * steps), "rep_compile_s": rep_compile})
  return {"users": data.n_users, "items": data.n_items, "batch": B, "steps": steps, "repeats": repeats,
          "seq_compile_s": seq_compile, "step_ms_1": step_ms_1, "rows": rows, "backend": jax.default_backend(),
          }


def end_to_end(overrides: list[str], n: int, mode: str) -> dict:
  """One whole run of N seeds in this (fresh) process: N × train_and_evaluate or one train_replicas.

  Timed from after the data is loaded: compilation, training, every evaluation, test
  scoring and the run files included.
  """
  import jax
  from xplo_jax.config import Config, apply_overrides
  from xplo_jax.preprocess import prepare_cached
  from xplo_jax.replicas import train_replicas
  from xplo_jax.train import train_and_evaluate
  cfg = apply_overrides(Config(), overrides + ["train.epochs=5", "train.eval_every=1"]).validate()
  _, data = prepare_cached(cfg, REPO / "runs" / "cache", progress=False)
  jax.devices()                                     # backend start-up is not part of either mode
  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    if mode == "seq":
      res = [train_and_evaluate(apply_overrides(cfg, {"train.seed": s}), Path(tmp) / f"seed{s}", data,
                                progress=False) for s in range(n)]
    else:
      res = train_replicas(cfg, tmp, data, list(range(n)), progress=False)
    wall = time.perf_counter() - t
  return {"wall_s": wall, "ndcg": [r.test["ndcg@20"] for r in res], "loss": [r.history[-1]["loss"] for r in res]}


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cases", default=",".join(CASES))
  p.add_argument("--ns", default="1,2,4,8")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--end-to-end", action="store_true")
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("overrides", nargs="*")
  args = p.parse_args()
  ns = [int(x) for x in args.ns.split(",")]
  if args.worker:                                   # one case in this (fresh) process
    if args.worker.startswith("e2e-"):
      _, mode, n = args.worker.split("-")
      print(json.dumps(end_to_end(CASES["xplovae-tiny"] + args.overrides, int(n), mode)))
    else:
      print(json.dumps(bench_case(CASES[args.worker] + args.overrides, ns, args.steps, args.repeats)))
    return 0

  def worker(name):
    cmd = [sys.executable, __file__, "--worker", name, "--ns", args.ns, "--steps", str(args.steps),
           "--repeats", str(args.repeats), *args.overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode:
      return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])

  print(f"load average at start: {_load()} ({os.cpu_count()} CPUs); {args.steps} steps per seed, "
        f"min of {args.repeats} repeats, compilation excluded")
  print()
  print("| case | users × items | B | N | sequential s | replicas s | speed-up | ms / seed-step seq | "
        "ms / seed-step rep | compile s (seq / rep) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for name in args.cases.split(","):
    r = worker(name)
    if "error" in r:
      print(f"| {name} | error: {r['error']} |", flush=True)
      continue
    for row in r["rows"]:
      print(f"| {name} | {r['users']} × {r['items']} | {r['batch']} | {row['N']} | {row['sequential_s']:.3f} | "
            f"{row['replicas_s']:.3f} | {row['speedup']:.2f}× | {row['seq_ms_per_seed_step']:.2f} | "
            f"{row['rep_ms_per_seed_step']:.2f} | {r['seq_compile_s']:.1f} / {row['rep_compile_s']:.1f} |",
            flush=True)
  if args.end_to_end:
    print()
    print("Whole runs, xplovae-tiny, 5 epochs (25 steps per seed), validation every epoch, test scoring, "
          "files; each mode in a fresh process, compilation included:")
    print()
    print("| N | N × train_and_evaluate s | train_replicas s | speed-up | same test NDCG@20 and last loss |")
    print("|---|---|---|---|---|")
    for n in ns:
      seq, rep = worker(f"e2e-seq-{n}"), worker(f"e2e-rep-{n}")
      if "error" in seq or "error" in rep:
        print(f"| {n} | error: {seq.get('error') or rep.get('error')} |", flush=True)
        continue
      same = all(abs(a - b) <= 1e-5 for a, b in zip(seq["ndcg"], rep["ndcg"])) and \
          all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(seq["loss"], rep["loss"]))
      print(f"| {n} | {seq['wall_s']:.1f} | {rep['wall_s']:.1f} | {seq['wall_s'] / rep['wall_s']:.2f}× | {same} |",
            flush=True)
  print()
  print(f"load average at end: {_load()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
