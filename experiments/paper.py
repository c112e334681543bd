"""Every experiment of the paper's Section 5 on one dataset, with one command.

  python experiments/paper.py --dataset NAME [--data-dir D] [--seeds N] [--only tables,fig3,fig4,fig5,fig6]
                              [--out DIR] [--quick] [section.field=value ...]

Runs, with progress, and resuming every finished point instead of recomputing it:

* ``tables`` — Tables 1–4 over all models (``compare.py``) into ``<out>/compare``;
* ``fig5`` — the ablation bars, from the same runs as the tables (``ablation.py``);
* ``fig4`` — the sensitivity to P, c₂ and Kₙ (``sensitivity.py``);
* ``fig6`` — time per iteration against data size and D (``efficiency.py``);
* ``fig3`` — t-SNE of user-specific item embeddings, XploVAE-1st vs XploVAE (``tsne.py``;
  needs scikit-learn: ``pip install 'xplo_jax[experiments]'``).

Writes ``runs/paper-<dataset>/`` (or ``--out``): PNG figures, the CSV behind each,
and ``REPORT.md``, which embeds the figures and the tables and states the protocol;
every number in it is read from the CSVs. ``--quick`` shrinks the grids (first and
last value) for smoke tests. Overrides apply to every run (e.g. ``train.epochs=300``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from experiments.common import base_config, errorbar_rows, mean_std, read_csv  # noqa: E402
from xplo_jax.fileio import atomic_write_text  # noqa: E402

PARTS = ("tables", "fig5", "fig4", "fig6", "fig3")


def _fmt(m: float, s: float, n: int) -> str:
  return f"{m:.4f}" if n == 1 else f"{m:.4f} ± {s:.4f}"


def report(out: Path, dataset: str, commands: dict, notes: dict) -> str:
  """REPORT.md from what is on disk (tables.md and the figures' CSVs).

  ``commands`` maps each part to the command line (and backend) that last produced it.
  """
  lines = [f"# The paper's experiments on {dataset}", "", "Produced by:", ""]
  by_command: dict = {}
  for part in PARTS:
    if part in commands:
      by_command.setdefault((commands[part]["command"], commands[part]["on"]), []).append(part)
  lines += [f"* {', '.join(ps)}: `{cmd}` on {on}" for (cmd, on), ps in by_command.items()]
  lines += ["", "Every number below is read from the CSV next to its figure.", ""]
  tables = out / "compare" / "tables.md"
  if tables.is_file():
    body = tables.read_text().split("\n", 1)[1]
    lines += ["## Comparison (Tables 1–4)", "", body.replace("## ", "### "), ""]
  if (out / "fig3.png").is_file():
    lines += ["## Fig. 3 — t-SNE of user-specific item embeddings", "", "![fig3](fig3.png)", ""]
    summary = out / "fig3.json"
    if summary.is_file():
      s = json.loads(summary.read_text())
      lines += [f"{len(s.get('users', []))} users drawn with seed {s.get('seed')}, their {s.get('relevant')} items "
                f"(at most {s.get('max_items')} each); the silhouette of the user labels puts a number on the "
                "paper's visual claim that items of the same user cluster (1 = separated, 0 = mixed).", "",
                "| model | points | silhouette (t-SNE plane) | silhouette (raw S, D dims) |", "|---|---|---|---|"]
      for m, v in s.get("panels", {}).items():
        lines.append(f"| {m} | {v['points']} | {v['silhouette_tsne']:.4f} | {v['silhouette_raw']:.4f} |")
      lines.append("")
  elif "fig3" in notes:
    lines += ["## Fig. 3 — t-SNE", "", notes["fig3"], ""]
  if (out / "fig4.csv").is_file():
    rows = read_csv(out / "fig4.csv")
    lines += ["## Fig. 4 — sensitivity (test Recall@20)", "", "![fig4](fig4.png)", "",
              "| parameter | value | effective | Recall@20 | NDCG@20 | runs |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["param"] for r in rows):
      sub = [r for r in rows if r["param"] == name]
      for e in errorbar_rows(sub, "value", "recall@20"):
        same = [r for r in sub if r["value"] == e["value"]]
        nd = mean_std([float(r["ndcg@20"]) for r in same])
        lines.append(f"| {name} | {e['value']} | {same[0]['effective']} | {_fmt(e['mean'], e['std'], e['n'])} | "
                     f"{_fmt(nd[0], nd[1], e['n'])} | {e['n']} |")
    lines.append("")
  if (out / "fig5.csv").is_file():
    rows = read_csv(out / "fig5.csv")
    lines += ["## Fig. 5 — ablations", "", "![fig5](fig5.png)", "", "| variant | Recall@20 | NDCG@20 | runs |",
              "|---|---|---|---|"]
    for e in errorbar_rows(rows, "label", "recall@20"):
      nd = mean_std([float(r["ndcg@20"]) for r in rows if r["label"] == e["label"]])
      lines.append(f"| {e['label']} | {_fmt(e['mean'], e['std'], e['n'])} | {_fmt(nd[0], nd[1], e['n'])} | "
                   f"{e['n']} |")
    lines.append("")
  if (out / "fig6.csv").is_file():
    rows = read_csv(out / "fig6.csv")
    lines += ["## Fig. 6 — efficiency (time per iteration after compilation, median)", "", "![fig6](fig6.png)", "",
              "| sweep | x | D | train interactions | ms / step | s / epoch | preprocessing s |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
      lines.append(f"| {r['sweep']} | {r['x']} | {r['embed_dim']} | {r['train_interactions']} | "
                   f"{float(r['step_ms']):.2f} | {float(r['epoch_s']):.3f} | {float(r['preprocess_s']):.3f} |")
    for sweep in ("fraction", "embed_dim"):
      sub = [r for r in rows if r["sweep"] == sweep]
      if sub:
        lines.append(f"\nLinear fit of ms/step against {sweep}: slope {float(sub[0]['fit_slope_ms']):.3f}, "
                     f"R² = {float(sub[0]['fit_r2']):.3f}.")
    lines.append("")
  for k, v in notes.items():
    if k != "fig3":
      lines += [f"Note ({k}): {v}", ""]
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="synthetic")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--seeds", type=int, default=1)
  p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts from {', '.join(PARTS)}")
  p.add_argument("--out", default=None)
  p.add_argument("--cache-dir", default=None)
  p.add_argument("--quick", action="store_true", help="first and last grid values only (smoke tests)")
  p.add_argument("--steps", type=int, default=20, help="timed steps per efficiency point")
  p.add_argument("--publish", default=None, help="also copy the figures and their CSVs here (e.g. docs/figures)")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("overrides", nargs="*")
  args = p.parse_args(argv)
  parts = [x.strip() for x in args.only.split(",") if x.strip()]
  bad = [x for x in parts if x not in PARTS]
  if bad:
    from xplo_jax.errors import ConfigError
    raise ConfigError(f"--only: unknown parts {bad}; choose from {', '.join(PARTS)}")
  base = base_config(args.dataset, args.data_dir, args.overrides)
  from xplo_jax.data import dataset_name
  name = dataset_name(base.data)
  out = Path(args.out) if args.out else REPO / "runs" / f"paper-{name}"
  out.mkdir(parents=True, exist_ok=True)
  progress = not args.no_progress
  common = ["--dataset", args.dataset, "--seeds", str(args.seeds)] + (
      ["--data-dir", args.data_dir] if args.data_dir else []) + (
      ["--cache-dir", args.cache_dir] if args.cache_dir else []) + ([] if progress else ["--no-progress"])
  notes = {}
  t0 = time.perf_counter()
  if "tables" in parts:
    from experiments import compare
    models = "xplovae,xplovae-1st,popularity" if args.quick else ",".join(compare.VARIANTS)
    compare.main(common + ["--out", str(out / "compare"), "--models", models, *args.overrides])
  if "fig5" in parts:
    from experiments import ablation
    ablation.run(base, out, seeds=args.seeds, runs_dir=out / "compare", progress=progress, cache_dir=args.cache_dir)
  if "fig4" in parts:
    from experiments import sensitivity
    sensitivity.run(base, out, seeds=args.seeds, progress=progress, cache_dir=args.cache_dir, quick=args.quick)
  if "fig6" in parts:
    from experiments import efficiency
    kw = dict(fractions=(0.5, 1.0), dims=(2, 8)) if args.quick else {}
    efficiency.run(base, out, steps=args.steps, progress=progress, cache_dir=args.cache_dir, **kw)
  if "fig3" in parts:
    notes.update(run_tsne(base, out, progress, args.cache_dir))
  import jax
  command = "python experiments/paper.py " + " ".join(sys.argv[1:] if argv is None else argv)
  commands = record_commands(out, parts, command, f"{jax.default_backend()} ({jax.device_count()} device(s))")
  atomic_write_text(out / "REPORT.md", report(out, name, commands, notes))
  if args.publish:
    publish(out, Path(args.publish))
  print(f"wrote {out / 'REPORT.md'} in {time.perf_counter() - t0:.0f} s")
  return 0


def record_commands(out: Path, parts: list, command: str, where: str) -> dict:
  """Updates ``<out>/commands.json`` (part → the command that last ran it) and returns it."""
  from xplo_jax.fileio import atomic_write_json
  path = out / "commands.json"
  commands = json.loads(path.read_text()) if path.is_file() else {}
  commands.update({part: {"command": command, "on": where} for part in parts})
  atomic_write_json(path, commands)
  return commands


def publish(out: Path, dest: Path) -> None:
  """Copies the figures, the CSVs behind them and the comparison tables to ``dest``."""
  from xplo_jax.fileio import atomic_write_bytes
  names = [f"fig{i}.{ext}" for i in (3, 4, 5, 6) for ext in ("png", "csv")] + ["fig3.json"]
  files = [(out / n, dest / n) for n in names] + [(out / "compare" / "tables.md", dest / "tables.md"),
                                                  (out / "compare" / "results.csv", dest / "results.csv")]
  for src, dst in files:
    if src.is_file():
      atomic_write_bytes(dst, src.read_bytes())


def run_tsne(base, out: Path, progress: bool, cache_dir) -> dict:
  """Fig. 3 from the comparison's XploVAE-1st and XploVAE runs (reused when already drawn)."""
  runs = {"XploVAE-1st": out / "compare" / "xplovae-1st" / "seed0", "XploVAE": out / "compare" / "xplovae" / "seed0"}
  missing = [str(p) for p in runs.values() if not (p / "final.json").is_file()]
  if missing:
    return {"fig3": f"skipped: the runs {missing} do not exist (run the `tables` part first)."}
  if (out / "fig3.png").is_file() and (out / "fig3.csv").is_file() and (out / "fig3.json").is_file():
    stamp = json.loads((out / "fig3.json").read_text()).get("runs_mtime")
    if stamp == _mtime(runs):
      return {}
  try:
    from experiments import tsne
  except ImportError as e:                     # scikit-learn is an optional extra
    return {"fig3": f"skipped: {e} (pip install 'xplo_jax[experiments]')."}
  from xplo_jax.preprocess import prepare_cached
  _, data = prepare_cached(base, Path(cache_dir) if cache_dir else REPO / "runs" / "cache", progress=progress)
  try:
    result = tsne.tsne_figure(runs, data, out / "fig3.png", out / "fig3.csv")
  except ImportError as e:
    return {"fig3": f"skipped: {e} (pip install 'xplo_jax[experiments]')."}
  from xplo_jax.fileio import atomic_write_json
  atomic_write_json(out / "fig3.json", {**_relative(result, out), "runs_mtime": _mtime(runs)})  # + a stamp
  return {}


def _relative(summary: dict, root: Path) -> dict:
  """tsne.py's summary with its paths relative to ``root``, so a published copy names no local folder."""
  def rel(path: str) -> str:
    try:
      return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
      return path
  out = {**summary, "figure": rel(summary["figure"]), "csv": rel(summary["csv"])}
  out["panels"] = {k: {**v, "run": rel(v["run"])} for k, v in summary.get("panels", {}).items()}
  return out


def _mtime(runs: dict) -> dict:
  return {k: (p / "final.json").stat().st_mtime for k, p in runs.items()}


if __name__ == "__main__":
  from xplo_jax.errors import cli_main
  sys.exit(cli_main(main))
