"""Readable summaries (Markdown) of runs."""

from __future__ import annotations

__all__ = ["metrics_table", "run_summary_markdown"]


def metrics_table(rows: dict[str, dict], ks=(10, 20, 50), names=("recall", "hits", "ndcg", "pild", "coverage")) -> str:
  """A Markdown table: one row per entry of ``rows``, columns metric@K."""
  cols = [f"{n}@{k}" for n in names for k in ks if any(f"{n}@{k}" in r for r in rows.values())]
  out = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  for name, r in rows.items():
    out.append(f"| {name} | " + " | ".join(f"{r[c]:.4f}" if c in r else "–" for c in cols) + " |")
  return "\n".join(out)


def run_summary_markdown(cfg, final: dict, history: list) -> str:
  m, t, d = cfg.model, cfg.train, cfg.data
  lines = [f"# {final['model']} on {final['dataset']}", ""]
  lines.append(f"- best epoch: {final['best_epoch']} of {final['epochs']} "
               f"({'early stop' if final.get('stopped_early') else 'epoch budget'}); wall time {final['wall_s']:.1f} s")
  lines.append(f"- split: per user {1 - d.test_frac:.0%} train / {d.test_frac:.0%} test, {d.valid_frac:.0%} of train "
               f"→ valid, seed {d.split_seed}; full ranking over all items, train (and valid, for test) items excluded")
  lines.append("- Recall@K = hits / min(K, |I_u|) (normalized, as Mult-VAE); hits@K = hits / |I_u|; "
               "PILD@K with Jaccard on train user sets")
  if final["model"] == "xplovae":
    lines.append(f"- model: P={m.latent_dim} D={m.embed_dim} H={m.hidden_dim} R={m.proximity_layers} "
                 f"M={m.conv_layers} orders={m.orders} negatives={t.negatives} β={t.beta} ({t.beta_schedule})")
  lines += ["", "## Test (best checkpoint)", "", metrics_table({"test": final["test"]}), ""]
  if final.get("valid"):
    lines += ["## Validation at the best epoch", "", metrics_table({"valid": final["valid"]}), ""]
  if history:
    sel = cfg.eval.select_metric
    lines += ["## Epochs", "", f"| epoch | loss | {sel} (valid) | train s | eval s |", "|---|---|---|---|---|"]
    for r in history:
      v = r.get("valid", {}).get(sel)
      lines.append(f"| {r['epoch']} | {r['loss']:.4f} | {'' if v is None else f'{v:.4f}'} | "
                   f"{r['train_s']:.2f} | {r.get('eval_s', 0):.2f} |")
    lines.append("")
  return "\n".join(lines)
