"""The source of notebooks/xplovae_colab.ipynb, in percent format (``# %%`` cells).

  python notebooks/make_notebook.py            # regenerate the .ipynb from this file
  python notebooks/make_notebook.py --check    # exit 1 if the .ipynb has drifted from it
  XPLO_NOTEBOOK_QUICK=1 python notebooks/colab_script.py   # run the cells as a script (tiny settings)

This header (before the first cell) is not part of the notebook. Every cell is plain
Python: shell commands go through ``sh()``, which runs them only in Colab, so
tests/test_notebook.py executes the notebook's cells on CPU and it cannot rot.
Environment variables read (all optional): XPLO_NOTEBOOK_QUICK=1 (tiny preset, 2
epochs), XPLO_NOTEBOOK_RUNS (runs folder), XPLO_NOTEBOOK_DATA_DIR (a folder holding
ml-100k/), XPLO_NOTEBOOK_DOWNLOAD=1 (download ML-100K outside Colab), XPLO_REPO_URL,
XPLO_REPO_DIR.
"""

# %% [markdown]
# # XploVAE in JAX on Colab (TPU / GPU / CPU)
#
# This notebook trains **XploVAE** (the exploration-exploitation motivated VAE for
# recommendation, Zhang & Liu) with the `xplo_jax` package, through exactly the code
# path of the command line: every run below is `experiments/run.py`'s `main([...])`.
#
# 1. installs the package from the repository (a clone, or a folder you uploaded);
# 2. picks up the accelerator (Runtime → Change runtime type → TPU or GPU) and shows
#    the device mesh the training loop will shard batches over;
# 3. trains on the embedded synthetic default (planted clusters shaped like MovieLens 100K);
# 4. trains on MovieLens 100K, from your Google Drive (`MyDrive/xplo_data/ml-100k/`)
#    or downloaded (checksummed) from GroupLens;
# 5. shows each run's `summary.md` and its validation curve.
#
# Set `QUICK = True` in section 3 (or the environment variable `XPLO_NOTEBOOK_QUICK=1`) for a
# one-minute smoke run with tiny settings; otherwise the package defaults apply
# (early stopping on validation NDCG@20). Runs are written under `RUNS`
# (`/content/runs` in Colab): `config.json`, `metrics.jsonl`, `final.json`,
# `summary.md`, `checkpoints/`.

# %% [markdown]
# ## 1. Install
#
# Set `REPO_URL` to the git URL of the repository, or upload / clone the `xplo_jax`
# folder to `/content/xplo_jax` first (then no URL is needed). The checkout is
# installed editable (`pip install -e`), with `jax[tpu]` on a TPU runtime and the
# `cuda` extra on a GPU runtime. (`pip install "git+<REPO_URL>"` would install the
# library alone; the notebook also needs the checkout's `experiments/run.py`.) If pip
# reports that it replaced packages the session had already imported, use Runtime →
# Restart session and run the cells again.

# %%
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_URL = os.environ.get("XPLO_REPO_URL", "https://github.com/<org>/xplo_jax")   # <- your fork's URL
IN_COLAB = "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ
ON_TPU = IN_COLAB and bool(os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME")
                           or list(Path("/dev").glob("accel*")))
ON_GPU = IN_COLAB and not ON_TPU and shutil.which("nvidia-smi") is not None
# One machine: never try jax.distributed (a TPU VM's environment can look like a pod's to the launcher check).
os.environ.setdefault("XPLO_JAX_NO_DISTRIBUTED", "1")


def sh(cmd: str) -> None:
  """Runs a shell line in Colab; elsewhere only prints it (the cells stay plain Python)."""
  if not IN_COLAB:
    print("[not in Colab, skipped]", cmd)
    return
  print("$", cmd)
  subprocess.run(cmd, shell=True, check=True)


def find_checkout():
  """The repository folder: $XPLO_REPO_DIR, the working folder or its parents, or /content/xplo_jax."""
  here = Path.cwd().resolve()
  for c in (os.environ.get("XPLO_REPO_DIR"), here, *list(here.parents)[:2], "/content/xplo_jax"):
    if c and (Path(c) / "experiments" / "run.py").is_file() and (Path(c) / "xplo_jax").is_dir():
      return Path(c).resolve()
  return None


REPO_DIR = find_checkout()
if REPO_DIR is None:
  if not IN_COLAB:
    raise RuntimeError("run this notebook from a checkout of the repository, or set XPLO_REPO_DIR")
  if "<org>" in REPO_URL:
    raise RuntimeError("set REPO_URL to the repository's git URL, or upload the xplo_jax folder to "
                       "/content/xplo_jax, then run this cell again")
  sh(f"git clone -q --depth 1 {REPO_URL} /content/xplo_jax")
  REPO_DIR = Path("/content/xplo_jax")
if IN_COLAB:
  extra = "[cuda]" if ON_GPU else ""          # the package's jax[cuda13] extra
  sh(f'pip install -q -e "{REPO_DIR}{extra}"')
  if ON_TPU:
    sh('pip install -q "jax[tpu]>=0.10.2,<0.12"')
else:
  try:
    import xplo_jax  # noqa: F401
  except ImportError:       # a local Jupyter without the package: install the checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO_DIR)], check=True)
if str(REPO_DIR) not in sys.path:    # a fresh editable install is not on the running kernel's path yet
  sys.path.insert(0, str(REPO_DIR))
print("repository:", REPO_DIR, "| Colab:", IN_COLAB, "| TPU:", ON_TPU, "| GPU:", ON_GPU)

# %% [markdown]
# ## 2. Devices
#
# The training loop builds one 1-D mesh over all devices (axis `data`): each batch
# of users is split across the devices, parameters are replicated. `train.batch_size`
# must be a multiple of the device count (the default 512 is, on every Colab runtime).

# %%
import jax

from xplo_jax.sharding import make_mesh

print("jax", jax.__version__, "| backend:", jax.default_backend(), "|", jax.device_count(), "device(s)")
for d in jax.devices():
  print("  ", d)
mesh = make_mesh()
print("mesh:", dict(mesh.shape), "axis names:", mesh.axis_names)

# %% [markdown]
# ## 3. The synthetic default, through the CLI's code path
#
# `run_cli(...)` calls `experiments/run.py`'s `main(argv)` (imported from the
# checkout) the way the shell command `python experiments/run.py ...` does, errors
# included. Edit `EXTRA` to override any config field (`section.field=value`).

# %%
import importlib.util

from xplo_jax.errors import cli_main

QUICK = os.environ.get("XPLO_NOTEBOOK_QUICK", "0") == "1"
RUNS = Path(os.environ.get("XPLO_NOTEBOOK_RUNS") or ("/content/runs" if IN_COLAB else REPO_DIR / "runs"))
EXTRA: list = []                  # e.g. ["train.epochs=200", "model.latent_dim=100"]
TINY_MODEL = ["preprocess.knn=20", "model.latent_dim=16", "model.hidden_dim=32", "train.epochs=2",
              "train.eval_every=1"]
QUICK_SYNTHETIC = ["data.synthetic_preset=tiny", "train.batch_size=64", "eval.user_batch=128", *TINY_MODEL]
QUICK_ML100K = ["train.batch_size=128", "eval.user_batch=256", *TINY_MODEL]

_spec = importlib.util.spec_from_file_location("xplo_run_cli", REPO_DIR / "experiments" / "run.py")
run_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_module)


def run_cli(argv: list) -> Path:
  """``python experiments/run.py <argv>`` in this process; returns the run folder it wrote."""
  name = argv[argv.index("--name") + 1]
  print("$ python experiments/run.py", " ".join(argv))
  rc = cli_main(run_module.main, [*argv, "--runs", str(RUNS)] + (["--no-progress"] if QUICK else []))
  if rc != 0:
    raise RuntimeError(f"experiments/run.py exited with status {rc}: see the 'error:' line above")
  # run.py adds a time stamp when the name is taken: the newest finished folder of that name is this run.
  done = [p for p in [RUNS / name, *RUNS.glob(f"{name}-2*")] if (p / "final.json").is_file()]
  return max(done, key=lambda p: (p / "final.json").stat().st_mtime)


synthetic_run = run_cli(["--dataset", "synthetic", "--name", "synthetic-xplovae",
                         *(QUICK_SYNTHETIC if QUICK else []), *EXTRA])
print(json.dumps(json.loads((synthetic_run / "final.json").read_text())["test"], indent=1))

# %% [markdown]
# ## 4. MovieLens 100K: from Google Drive, or downloaded
#
# Put the unzipped `ml-100k/` folder (with `u.data`) in `MyDrive/xplo_data/` to read it
# from Drive; otherwise it is downloaded from GroupLens and checked against its
# checksum (without network this fails with a message saying so). Outside Colab the
# cell reads `$XPLO_NOTEBOOK_DATA_DIR` (a folder holding `ml-100k/`), downloads only
# with `XPLO_NOTEBOOK_DOWNLOAD=1`, and is skipped otherwise.

# %%
USE_DRIVE = True
DRIVE_DATA = Path("/content/drive/MyDrive/xplo_data")

ml_args = None
if os.environ.get("XPLO_NOTEBOOK_DATA_DIR"):
  ml_args = ["--data-dir", os.environ["XPLO_NOTEBOOK_DATA_DIR"]]
elif IN_COLAB:
  if USE_DRIVE:
    from google.colab import drive
    drive.mount("/content/drive")
  if USE_DRIVE and (DRIVE_DATA / "ml-100k" / "u.data").is_file():
    ml_args = ["--data-dir", str(DRIVE_DATA)]
  else:
    print(f"no {DRIVE_DATA}/ml-100k/u.data: downloading MovieLens 100K (checksummed)")
    ml_args = ["data.download=true"]
elif os.environ.get("XPLO_NOTEBOOK_DOWNLOAD") == "1":
  ml_args = ["data.download=true"]
else:
  print("ML-100K skipped: not in Colab and XPLO_NOTEBOOK_DATA_DIR is unset "
        "(point it to a folder holding ml-100k/, or set XPLO_NOTEBOOK_DOWNLOAD=1)")

ml100k_run = None
if ml_args is not None:
  ml100k_run = run_cli(["--dataset", "ml-100k", "--name", "ml-100k-xplovae", *ml_args,
                        *(QUICK_ML100K if QUICK else []), *EXTRA])
  print(json.dumps(json.loads((ml100k_run / "final.json").read_text())["test"], indent=1))

# %% [markdown]
# ## 5. Results: each run's summary and validation curve

# %%
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

try:
  from IPython import get_ipython
  IN_IPYTHON = get_ipython() is not None
except ImportError:
  IN_IPYTHON = False


def show_run(workdir: Path) -> Path:
  """Prints (or renders) summary.md and plots the validation metric per epoch; returns the PNG."""
  text = (workdir / "summary.md").read_text()
  if IN_IPYTHON:
    from IPython.display import Markdown, display
    display(Markdown(text))
  else:
    print(text)
  cfg = json.loads((workdir / "config.json").read_text())["config"]
  select = cfg["eval"]["select_metric"]
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
  rows = [r for r in rows if "valid" in r]
  fig, ax = plt.subplots(figsize=(5, 3))
  ax.plot([r["epoch"] for r in rows], [r["valid"][select] for r in rows], marker="o")
  ax.set(xlabel="epoch", ylabel=f"validation {select}", title=workdir.name)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.grid(alpha=0.3)
  fig.tight_layout()
  png = workdir / "valid_curve.png"
  fig.savefig(png, dpi=90)
  if IN_IPYTHON:
    plt.show()
  plt.close(fig)
  return png


for run in [synthetic_run, ml100k_run]:
  if run is not None:
    print("curve:", show_run(run))
