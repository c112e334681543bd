"""Command lines: bad input ends with a clear one-line error and exit status 2, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")


def run(*args, cwd=REPO):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600)


def test_stats_of_a_missing_dataset_is_a_clear_error(tmp_path):
  p = run("-m", "xplo_jax.data", "stats", "--dataset", "netflix", "--data-dir", str(tmp_path / "nowhere"))
  assert p.returncode == 2
  assert p.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in p.stderr


def test_malformed_csv_names_file_line_and_field(tmp_path):
  f = tmp_path / "r.csv"
  f.write_text("user,item,rating\n1,2,5\n1,3,five\n")
  p = run("-m", "xplo_jax.data", "stats", "--dataset", "csv", "--data-dir", str(f))
  assert p.returncode == 2
  last = p.stderr.strip().splitlines()[-1]
  assert "r.csv:3" in last and "rating" in last and "Traceback" not in p.stderr


def test_preprocess_cli_summary_inspect_and_config_guard(tmp_path):
  out = tmp_path / "shards"
  args = ["-m", "xplo_jax.preprocess", "--dataset", "synthetic", "--out", str(out), "--no-progress",
          "data.synthetic_preset=tiny", "preprocess.knn=20"]
  p = run(*args)
  assert p.returncode == 0, p.stderr
  summary = json.loads(p.stdout)
  assert summary["shards"]["users"] == 300 and summary["shards"]["knn"] == 20
  p = run("-m", "xplo_jax.preprocess", "inspect", str(out), "--user", "0")
  assert p.returncode == 0 and json.loads(p.stdout)["user"] == 0
  before = (out / "manifest.json").read_bytes()
  p = run(*args[:-1], "preprocess.knn=21")                 # another config into the same folder
  assert p.returncode == 2 and "another config" in p.stderr.strip().splitlines()[-1]
  assert (out / "manifest.json").read_bytes() == before    # nothing was overwritten
  p = run("-m", "xplo_jax.preprocess", "inspect", str(out), "--user", "999")
  assert p.returncode == 2 and "expected a user index in [0, 300)" in p.stderr


def test_run_py_rejects_unknown_override(tmp_path):
  p = run("experiments/run.py", "--runs", str(tmp_path), "model.latentdim=3")
  assert p.returncode == 2 and "model has no field 'latentdim'" in p.stderr
