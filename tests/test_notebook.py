"""The Colab notebook: no drift from its script, and its cells run end to end on CPU.

  python -m pytest tests/test_notebook.py

The execution test concatenates the .ipynb's code cells (as committed, not the
script) into one script and runs it in a subprocess with XPLO_NOTEBOOK_QUICK=1 (tiny
settings, 2 epochs), JAX_PLATFORMS=cpu and a temporary runs folder; ML-100K is read
from ../shared/data when present (XPLO_NOTEBOOK_DATA_DIR), else that cell is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XPLO_SHARED_DATA", REPO.parent / "shared" / "data"))   # as conftest.py
NB_DIR = REPO / "notebooks"


def _make_notebook():
  spec = importlib.util.spec_from_file_location("make_notebook", NB_DIR / "make_notebook.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _code_cells() -> list[str]:
  nb = json.loads((NB_DIR / "xplovae_colab.ipynb").read_text(encoding="utf-8"))
  return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_equals_what_make_notebook_generates():
  mk = _make_notebook()
  want = mk.render(mk.build_notebook((NB_DIR / "colab_script.py").read_text(encoding="utf-8")))
  have = (NB_DIR / "xplovae_colab.ipynb").read_text(encoding="utf-8")
  assert have == want, "notebooks/xplovae_colab.ipynb is stale: run python notebooks/make_notebook.py"
  nb = json.loads(have)
  assert nb["nbformat"] == 4 and nb["cells"][0]["cell_type"] == "markdown"
  assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"])
  assert all(c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"] if c["cell_type"] == "code")


def test_parse_percent_cells():
  mk = _make_notebook()
  text = "'''header'''\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\ny = 2\n\n# %% [markdown]\n"
  assert mk.parse_percent(text) == [("markdown", "# Title\n\ntext"), ("code", "x = 1\n\n\ny = 2")]
  assert mk._source_lines("a\nb") == ["a\n", "b"]
  with pytest.raises(ValueError, match="comment lines only"):
    mk.parse_percent("# %% [markdown]\nnot a comment\n")


def test_code_cells_are_plain_python():
  for src in _code_cells():
    compile(src, "<cell>", "exec")         # no IPython magics: '!pip' or '%cd' would not compile
    assert not any(line.lstrip().startswith(("!", "%")) for line in src.splitlines())


def test_notebook_runs_on_cpu_with_quick_settings(tmp_path):
  script = tmp_path / "notebook_as_script.py"
  script.write_text("\n\n".join(_code_cells()) + "\n", encoding="utf-8")
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("COLAB_", "XPLO_NOTEBOOK_", "XPLO_REPO_", "TPU_")) and k != "XLA_FLAGS"}
  env.update(XPLO_NOTEBOOK_QUICK="1", XPLO_NOTEBOOK_RUNS=str(tmp_path / "runs"), JAX_PLATFORMS="cpu",
             MPLBACKEND="Agg", XPLO_JAX_CACHE=str(tmp_path / "download-cache"))
  has_ml100k = (SHARED_DATA / "ml-100k" / "u.data").is_file()
  if has_ml100k:
    env["XPLO_NOTEBOOK_DATA_DIR"] = str(SHARED_DATA)
  # cwd = the notebook's folder, as Jupyter starts it: the cells must find the checkout from there.
  proc = subprocess.run([sys.executable, str(script)], cwd=NB_DIR, env=env, capture_output=True, text=True,
                        timeout=300)
  log = proc.stdout[-4000:] + "\n--- stderr ---\n" + proc.stderr[-4000:]
  assert proc.returncode == 0, log
  assert "backend: cpu" in proc.stdout and "mesh: {'data': 1}" in proc.stdout, log
  assert "[not in Colab, skipped]" not in proc.stdout      # sh() lines are Colab-only and were not reached
  runs = tmp_path / "runs"
  expected = ["synthetic-xplovae"] + (["ml-100k-xplovae"] if has_ml100k else [])
  for name in expected:
    final = json.loads((runs / name / "final.json").read_text())
    conf = json.loads((runs / name / "config.json").read_text())["config"]
    assert final["epochs"] == 2 and conf["train"]["epochs"] == 2 and conf["model"]["latent_dim"] == 16
    assert 0.0 < final["test"]["ndcg@20"] <= 1.0
    assert (runs / name / "valid_curve.png").stat().st_size > 1000
    assert f"# xplovae on {conf['data']['dataset']}" in proc.stdout       # summary.md was shown
  assert json.loads((runs / "synthetic-xplovae" / "config.json").read_text())["config"]["data"][
      "synthetic_preset"] == "tiny"
  if not has_ml100k:
    assert "ML-100K skipped" in proc.stdout
    assert not (runs / "ml-100k-xplovae").exists()
