"""experiments/paper.py (and the figure commands under it) end to end on a tiny synthetic set."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic_preset=tiny", "preprocess.knn=20", "model.latent_dim=16", "model.hidden_dim=32",
        "train.batch_size=64", "eval.user_batch=128", "train.epochs=1"]


def load(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_paper_driver_outputs_numbers_and_resume(tmp_path, monkeypatch):
  paper = load("paper")
  from experiments.common import errorbar_rows, read_csv
  out = tmp_path / "paper"
  args = ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quick", "--only", "tables,fig5,fig4,fig6",
          "--steps", "2", "--no-progress", *TINY]
  assert paper.main(args) == 0
  for f in ("REPORT.md", "fig4.png", "fig4.csv", "fig5.png", "fig5.csv", "fig6.png", "fig6.csv",
            "compare/tables.md"):
    assert (out / f).is_file() and (out / f).stat().st_size > 0, f
  report = (out / "REPORT.md").read_text()
  assert "![fig4](fig4.png)" in report and "Table 2: Recall@20" in report
  # Every figure's numbers in REPORT.md are the CSVs' numbers.
  fig4 = read_csv(out / "fig4.csv")
  assert {r["param"] for r in fig4} == {"latent_dim", "threshold", "knn"} and len(fig4) == 6
  assert any(r["param"] == "knn" and r["value"] == "400" and r["effective"] == "199" for r in fig4)  # clamped
  for param in ("latent_dim", "threshold", "knn"):
    for e in errorbar_rows([r for r in fig4 if r["param"] == param], "value", "recall@20"):
      assert f"| {param} | {e['value']} |" in report and f"| {e['mean']:.4f} |" in report
  fig5 = read_csv(out / "fig5.csv")
  assert len(fig5) == 5
  for r in fig5:
    assert re.search(rf"\| {re.escape(r['label'])} \| {float(r['recall@20']):.4f} \| {float(r['ndcg@20']):.4f} \|",
                     report), r["label"]
  fig6 = read_csv(out / "fig6.csv")
  assert {r["sweep"] for r in fig6} == {"fraction", "embed_dim"} and len(fig6) == 4
  for r in fig6:
    assert f"| {float(r['step_ms']):.2f} |" in report
    assert float(r["step_ms"]) > 0 and float(r["preprocess_s"]) > 0
  half = [r for r in fig6 if r["sweep"] == "fraction" and float(r["x"]) == 0.5][0]
  full = [r for r in fig6 if r["sweep"] == "fraction" and float(r["x"]) == 1.0][0]
  assert int(half["train_interactions"]) < int(full["train_interactions"])
  # A resumed driver recomputes nothing already finished.
  from xplo_jax import train
  efficiency = __import__("experiments.efficiency", fromlist=["time_point"])
  monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: pytest.fail("retrained a finished point"))
  monkeypatch.setattr(efficiency, "time_point", lambda *a, **k: pytest.fail("re-timed a finished point"))
  assert paper.main(args) == 0
  assert (out / "REPORT.md").read_text().split("\n", 3)[3] == report.split("\n", 3)[3]


def test_subsample_train_keeps_fraction_per_user():
  from experiments.efficiency import subsample_train
  import numpy as np
  from xplo_jax.config import DataConfig
  from xplo_jax.data import load_split
  split = load_split(DataConfig(synthetic_preset="tiny"))
  sub = subsample_train(split, 0.3, seed=0)
  n = np.bincount(split.train.user, minlength=split.n_users)
  m = np.bincount(sub.train.user, minlength=split.n_users)
  np.testing.assert_array_equal(m, np.maximum(1, np.floor(0.3 * n + 0.5)))
  keys = set(zip(sub.train.user.tolist(), sub.train.item.tolist()))
  assert keys <= set(zip(split.train.user.tolist(), split.train.item.tolist()))
  assert sub.test is split.test and sub.valid is split.valid


def test_tsne_summary_names_no_local_folder(tmp_path):
  paper = load("paper")
  out = tmp_path / "paper"
  summary = {"figure": str(out / "fig3.png"), "csv": str(out / "fig3.csv"), "seed": 0,
             "panels": {"XploVAE": {"run": str(out / "compare" / "xplovae" / "seed0"), "points": 3},
                        "elsewhere": {"run": "/data/runs/x", "points": 2}}}
  rel = paper._relative(summary, out)
  assert rel["figure"] == "fig3.png" and rel["csv"] == "fig3.csv" and rel["seed"] == 0
  assert rel["panels"]["XploVAE"] == {"run": "compare/xplovae/seed0", "points": 3}
  assert rel["panels"]["elsewhere"]["run"] == "/data/runs/x"       # outside the folder: left as it was


def test_report_names_the_command_behind_each_part(tmp_path):
  paper = load("paper")
  out = tmp_path / "paper"
  out.mkdir()
  paper.record_commands(out, ["tables", "fig5", "fig4"], "python experiments/paper.py --seeds 1", "cpu (1 device(s))")
  commands = paper.record_commands(out, ["fig5"], "python experiments/paper.py --seeds 3 --only fig5", "gpu (1 device(s))")
  report = paper.report(out, "tiny", commands, {})
  assert "* tables, fig4: `python experiments/paper.py --seeds 1` on cpu (1 device(s))" in report
  assert "* fig5: `python experiments/paper.py --seeds 3 --only fig5` on gpu (1 device(s))" in report
