"""Generates notebooks/xplovae_colab.ipynb from the percent-format script colab_script.py.

  python notebooks/make_notebook.py            # (re)write the notebook
  python notebooks/make_notebook.py --check    # exit 1 if the notebook differs from what it would write

The format read: everything before the first ``# %%`` line is a header (not in the
notebook); ``# %% [markdown]`` starts a markdown cell whose lines are comments
(``# text`` → ``text``, a bare ``#`` → an empty line); ``# %%`` starts a code cell
(its lines verbatim). Leading and trailing blank lines of a cell are dropped. The
output is nbformat 4.5 JSON written with the ``json`` module (no nbformat/jupytext
dependency): sorted keys, one-space indent, fixed cell ids, no outputs, so the same
script always gives byte-identical output and tests/test_notebook.py can check for
drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "colab_script.py"
NOTEBOOK = HERE / "xplovae_colab.ipynb"

__all__ = ["parse_percent", "build_notebook", "render", "main"]


def _trim(lines: list[str]) -> list[str]:
  while lines and not lines[0].strip():
    lines = lines[1:]
  while lines and not lines[-1].strip():
    lines = lines[:-1]
  return lines


def parse_percent(text: str) -> list[tuple[str, str]]:
  """Cells of a percent-format script: [(kind 'markdown' | 'code', source)].

  Raises:
    ValueError: a markdown cell line that is not a comment, or no cells at all.
  """
  cells: list[tuple[str, list[str]]] = []
  for n, line in enumerate(text.splitlines(), 1):
    if line.startswith("# %%"):
      kind = "markdown" if line[4:].strip().startswith("[markdown]") else "code"
      cells.append((kind, []))
      continue
    if not cells:
      continue                      # the header
    kind, body = cells[-1]
    if kind == "markdown":
      if line.strip() and not line.startswith("#"):
        raise ValueError(f"line {n}: a markdown cell holds comment lines only, got {line!r}")
      line = line[2:] if line.startswith("# ") else line[1:]
    body.append(line)
  if not cells:
    raise ValueError("no '# %%' cells found")
  return [(kind, "\n".join(_trim(body))) for kind, body in cells if _trim(body)]


def _source_lines(source: str) -> list[str]:
  lines = source.split("\n")
  return [l + "\n" for l in lines[:-1]] + [lines[-1]]         # nbformat: newline kept except on the last


def build_notebook(text: str) -> dict:
  """The nbformat-4 notebook (a JSON-able dict) of a percent-format script."""
  cells = []
  for i, (kind, source) in enumerate(parse_percent(text)):
    cell = {"cell_type": kind, "id": f"cell-{i:02d}", "metadata": {}, "source": _source_lines(source)}
    if kind == "code":
      cell.update(execution_count=None, outputs=[])
    cells.append(cell)
  return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"colab": {"name": NOTEBOOK.name, "provenance": []},
                       "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}}}


def render(nb: dict) -> str:
  """The notebook's file text (deterministic)."""
  return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--script", default=str(SCRIPT))
  p.add_argument("--out", default=str(NOTEBOOK))
  p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on drift")
  args = p.parse_args(argv)
  nb = build_notebook(Path(args.script).read_text(encoding="utf-8"))
  text, out = render(nb), Path(args.out)
  if args.check:
    same = out.is_file() and out.read_text(encoding="utf-8") == text
    print(f"{out}: " + ("up to date" if same else f"differs from {args.script}; run python notebooks/make_notebook.py"))
    return 0 if same else 1
  out.write_text(text, encoding="utf-8")
  print(f"wrote {out} ({len(nb['cells'])} cells)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
