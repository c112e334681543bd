"""Preprocessing wall time and peak memory (the issue-2 target: ML-10M shape ≤ 5 min, ≤ 8 GB).

  python benchmarks/preprocess_bench.py [--cases ml-100k,ml-10m,...] [--out DIR]

Each case runs ``python -m xplo_jax.preprocess`` in a fresh process under
``/usr/bin/time -v`` (load → filter → split → preprocess, from scratch) and the
table reports wall time, peak RSS and the shard summary.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

CASES = {
    "ml-100k": ["--dataset", "ml-100k", "--data-dir", str(SHARED)],
    "synthetic-ml-100k": ["--dataset", "synthetic", "data.synthetic_preset=ml-100k"],
    "synthetic-sparse-small": ["--dataset", "synthetic", "data.synthetic_preset=sparse-small"],
    "synthetic-ml-10m": ["--dataset", "synthetic", "data.synthetic_preset=ml-10m"],
    "synthetic-alibaba@0.1": ["--dataset", "synthetic", "data.synthetic_preset=alibaba", "data.synthetic_scale=0.1"],
}


def run_case(name: str, args: list[str], workdir: Path, extra: list[str]) -> dict:
  out = workdir / name
  shutil.rmtree(out, ignore_errors=True)
  cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "xplo_jax.preprocess", *args, "--out", str(out),
         "--no-progress", *extra]
  p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  if p.returncode != 0:
    return {"case": name, "error": p.stderr.strip().splitlines()[-1] if p.stderr else f"exit {p.returncode}"}
  wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", p.stderr).group(1)
  parts = [float(x) for x in wall.split(":")]
  seconds = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
  rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
  summary = json.loads(p.stdout)
  s, d = summary["shards"], summary["dataset"]
  return {"case": name, "users": d["users"], "items": d["items"], "train": d["train"]["interactions"],
          "wall_s": seconds, "peak_gb": rss_kb / 2 ** 20, "backend": s["proximity_backend"],
          "width1": s["width1"], "width2": s["width2"], "a2_mean": s["a2_len"]["mean"],
          "labels_3_4": s["label_fractions"]["3"] + s["label_fractions"]["4"],
          "preprocess_s": s["timing_s"]["total_s"], "disk_gb": s["bytes"] / 2 ** 30}


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cases", default="ml-100k,synthetic-ml-100k,synthetic-sparse-small,synthetic-ml-10m")
  p.add_argument("--out", default=None, help="scratch folder (default: a temporary one, removed)")
  p.add_argument("extra", nargs="*", help="extra arguments for xplo_jax.preprocess, e.g. --memory-gb 2")
  args = p.parse_args()
  tmp = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="xplo_bench_"))
  rows = []
  try:
    for name in args.cases.split(","):
      if name == "ml-100k" and not (SHARED / "ml-100k" / "u.data").is_file():
        print(f"skip {name}: {SHARED}/ml-100k not found", file=sys.stderr)
        continue
      rows.append(run_case(name, CASES[name], tmp, args.extra))
      print(json.dumps(rows[-1]), file=sys.stderr)
  finally:
    if not args.out:
      shutil.rmtree(tmp, ignore_errors=True)
  cols = ["case", "users", "items", "train", "wall_s", "peak_gb", "preprocess_s", "backend", "width1", "width2",
          "a2_mean", "labels_3_4", "disk_gb"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for r in rows:
    if "error" in r:
      print(f"| {r['case']} | error: {r['error']} |")
      continue
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    print("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
