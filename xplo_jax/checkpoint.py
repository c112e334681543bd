"""A thin wrapper over orbax's ``CheckpointManager``: latest N and the best one.

A checkpoint holds the model parameters, the optimizer state (as flat leaf dicts,
restored into the structure of freshly built templates, so no pickled tree
definitions are stored) and a JSON ``meta`` record (epoch, step, RNG key, data
order seed, early-stopping state, history). Saves are asynchronous; ``wait()``
before exit. A crash during a save leaves the previous checkpoints intact (orbax
writes into a temporary folder and renames it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

log = logging.getLogger(__name__)

__all__ = ["Checkpointer"]


def _to_leaves(tree) -> dict[str, Any]:
  return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _from_leaves(template, leaves: dict[str, Any]):
  treedef = jax.tree.structure(template)
  if treedef.num_leaves != len(leaves):
    raise ValueError(f"checkpoint has {len(leaves)} leaves, the model expects {treedef.num_leaves}: "
                     "it was written for another model configuration")
  return jax.tree.unflatten(treedef, [leaves[f"{i:05d}"] for i in range(len(leaves))])


class Checkpointer:
  """Keeps the latest ``keep_latest`` checkpoints and the best one.

  "Best" is decided by the caller (early stopping owns the rule, ties included):
  ``save(..., is_best=True)`` marks a new best. Orbax ranks checkpoints by the
  count of improvements so far, so the newest best always wins and ties never
  arise.

  Args:
    directory: where checkpoints live (one sub-folder per saved epoch).
    keep_latest: how many of the most recent checkpoints to keep.
  """

  def __init__(self, directory, keep_latest: int = 2):
    self.directory = Path(directory).absolute()
    self._improvements = 0
    policy = cm.AnyPreservationPolicy([cm.LatestN(n=keep_latest),
                                       cm.BestN(get_metric_fn=lambda m: m["improvement"], n=1)])
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("params", "opt_state", "meta"))

  def save(self, epoch: int, params, opt_state, meta: dict, is_best: bool) -> None:
    if is_best:
      self._improvements = int(meta.get("improvements", self._improvements + 1))
    self.manager.save(epoch, args=ocp.args.Composite(params=ocp.args.StandardSave(_to_leaves(params)),
                                                     opt_state=ocp.args.StandardSave(_to_leaves(opt_state)),
                                                     meta=ocp.args.JsonSave(meta)),
                      metrics={"improvement": float(self._improvements if is_best else -1)})

  def latest(self) -> Optional[int]:
    return self.manager.latest_step()

  def best(self) -> Optional[int]:
    return self.manager.best_step()

  def all(self) -> list[int]:
    return list(self.manager.all_steps())

  def restore(self, epoch: int, params_template, opt_template):
    """(params, opt_state, meta) of ``epoch``, in the templates' structure and shardings."""
    abstract = lambda t: jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_leaves(t))
    out = self.manager.restore(epoch, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract(params_template)),
        opt_state=ocp.args.StandardRestore(abstract(opt_template)),
        meta=ocp.args.JsonRestore()))
    return _from_leaves(params_template, out["params"]), _from_leaves(opt_template, out["opt_state"]), out["meta"]

  def restore_meta(self, epoch: int) -> dict:
    return self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
