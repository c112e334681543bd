"""Training: one jitted step, the epoch loop, early stopping and checkpoints.

* ``train_step`` is defined once at module level and jitted with static shapes;
  after the first step nothing recompiles (``trace_count()`` counts traces).
* The step's randomness comes from ``fold_in(key, step)`` and the data order of
  epoch e from ``default_rng([seed, e])``: a run resumed from a checkpoint draws
  exactly what the uninterrupted run would have drawn.
* Data parallel: batches sharded over the mesh's 'data' axis, parameters
  replicated; one device is the 1-device mesh of the same code.
* Each epoch: validation ranking metrics, early stopping on ``eval.select_metric``,
  an orbax checkpoint (latest 2 + best 1). A non-finite loss stops training with
  a clear error, keeping the last good checkpoint. The test set is scored once,
  with the best checkpoint.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from xplo_jax import sharding as shard_lib
from xplo_jax.checkpoint import Checkpointer
from xplo_jax.config import EXECUTION_ONLY, Config, config_to_dict
from xplo_jax.errors import ConfigError, XploError
from xplo_jax.evaluate import JaccardOracle, evaluate_ranking
from xplo_jax.fileio import atomic_write_json, atomic_write_text
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe, get_recipe

log = logging.getLogger(__name__)

__all__ = ["TrainingDiverged", "step_fn", "train_step", "trace_count", "note_trace", "epoch_order", "pad_batches",
           "eval_interval", "should_stop", "get_scorer", "create_state", "train_and_evaluate", "RunResult",
           "write_config", "write_history", "write_final", "ckpt_exists"]

_TRACES = collections.Counter()


class TrainingDiverged(XploError):
  """The loss became NaN or infinite."""


def trace_count(name: str = "train_step") -> int:
  """How many times ``train_step`` (or another named step) has been traced in this process."""
  return _TRACES[name]


def note_trace(name: str) -> None:
  """Counts one trace of the step ``name`` (call it inside the traced function)."""
  _TRACES[name] += 1


def eval_interval(cfg: Config, steps_per_epoch: int) -> int:
  """Epochs between evaluations: ``train.eval_every``, or (0) about every 20 steps."""
  return cfg.train.eval_every or max(1, -(-20 // steps_per_epoch))


def should_stop(bad_evals: int, step: int, cfg: Config) -> bool:
  """Early stopping: ``patience`` evaluations without improvement, never before ``min_steps``."""
  return bad_evals >= cfg.train.patience and step >= cfg.train.min_steps


_SCORERS: dict = {}


def get_scorer(recipe: Recipe, graphdef, model, item_chunk: int):
  """The recipe's ``Scorer``, built once per (recipe, graph, chunk): ``rank_topk`` compiles once
  for every run of the same model shape (a Scorer is a static argument hashed by identity)."""
  key = (recipe, graphdef, item_chunk)
  if key not in _SCORERS:
    _SCORERS[key] = recipe.scorer(graphdef, model, item_chunk)
  return _SCORERS[key]


def step_fn(recipe: Recipe, graphdef, static, params, rest, opt_state, batch: dict, step: jax.Array,
            key: jax.Array):
  """The update rule, unjitted: ``train_step`` jits it; ``replicas`` vmaps it over seeds.

  Same arguments and results as ``train_step``.
  """
  def loss_fn(p):
    return recipe.loss(nnx.merge(graphdef, p, rest), batch, step, jax.random.fold_in(key, step), static)

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = recipe.optimizer(static).update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return params, opt_state, {"loss": loss, **aux}


@functools.partial(jax.jit, static_argnames=("recipe", "graphdef", "static"),
                   donate_argnames=("params", "opt_state"))
def train_step(recipe: Recipe, graphdef, static, params, rest, opt_state, batch: dict, step: jax.Array,
               key: jax.Array):
  """One optimizer step on one (sharded) batch.

  Args:
    recipe: the model's recipe (static); graphdef: its NNX graph (static); static:
      the recipe's hashable loss settings.
    params: trainable ``nnx.Param`` state (donated); rest: the other state (graph arrays).
    opt_state: optimizer state (donated).
    batch: host-built arrays, leading axis = global batch, sharded on 'data'.
    step: int32 global step (drives the KL schedule and the RNG).
    key: the run's base PRNG key; this step uses ``fold_in(key, step)``.

  Returns:
    (params, opt_state, metrics dict of scalars).
  """
  note_trace("train_step")            # runs only while tracing
  return step_fn(recipe, graphdef, static, params, rest, opt_state, batch, step, key)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  """The user order of an epoch: a permutation fixed by (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def pad_batches(order: np.ndarray, batch_size: int):
  """Batches of ``batch_size`` users; the last one padded (not sliced), with a validity mask."""
  for s in range(0, len(order), batch_size):
    users = order[s:s + batch_size]
    valid = np.ones(batch_size, bool)
    if len(users) < batch_size:
      valid[len(users):] = False
      users = np.concatenate([users, order[:batch_size - len(users)]])
    yield users, valid


def create_state(cfg: Config, data: SubgraphData, recipe: Recipe, mesh):
  """(model, graphdef, params, rest, opt_state), parameters replicated on ``mesh``."""
  model = recipe.build(cfg, data, nnx.Rngs(params=cfg.train.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = shard_lib.put_replicated(params, mesh)
  rest = shard_lib.put_replicated(rest, mesh)
  opt_state = shard_lib.put_replicated(recipe.optimizer(recipe.static(cfg)).init(params), mesh)
  return model, graphdef, params, rest, opt_state


@dataclasses.dataclass
class RunResult:
  """What a run produced: final test metrics, the best validation metrics, history."""
  test: dict
  valid: dict
  best_epoch: int
  epochs: int
  history: list
  workdir: Path
  wall_s: float
  stopped_early: bool = False


def _scalars(d: dict) -> dict:
  return {k: float(v) for k, v in d.items()}


def mesh_batching(cfg: Config, mesh) -> tuple[int, int]:
  """(evaluation user batch, steps between loss syncs) on ``mesh``.

  The train batch must split evenly over the mesh's devices; the evaluation batch is
  rounded up to a multiple of them. On a multi-device CPU mesh the loss is read back
  every 8 steps: dispatching dozens of unsynced collective steps on virtual CPU devices
  aborts the process (NOTES-JAX.md).
  """
  n_dev, B = mesh.devices.size, cfg.train.batch_size
  if B % n_dev:
    raise ConfigError(f"train.batch_size {B} must be a multiple of the {n_dev} devices of the mesh")
  eval_batch = -(-cfg.eval.user_batch // n_dev) * n_dev
  sync_every = 8 if (n_dev > 1 and jax.devices()[0].platform == "cpu") else cfg.train.log_every
  return eval_batch, sync_every


def train_and_evaluate(cfg: Config, workdir, data: SubgraphData, *, resume: bool = False,
                       progress: bool = True, mesh=None, stop_after_epochs: Optional[int] = None) -> RunResult:
  """Trains ``cfg.model.name`` on ``data`` and scores the best checkpoint on the test set.

  Writes under ``workdir``: config.json, metrics.jsonl (one line per epoch),
  final.json, summary.md, checkpoints/.

  Args:
    cfg: the resolved config.
    workdir: the run folder.
    data: the preprocessed shards.
    resume: continue from the latest checkpoint in ``workdir``.
    progress: tqdm bars.
    mesh: a device mesh (default: all devices).
    stop_after_epochs: stop (as if interrupted) after this many epochs of this call,
      without the final test evaluation (used to test resumption).
  """
  t_run = time.perf_counter()
  progress = progress and shard_lib.is_primary()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  recipe = get_recipe(cfg.model.name)
  mesh = mesh or shard_lib.make_mesh()
  B = cfg.train.batch_size
  eval_batch, sync_every = mesh_batching(cfg, mesh)
  write_config(workdir, cfg, data, mesh, resume)

  arrays = data.all_users()
  arrays["users"] = np.arange(data.n_users, dtype=np.int32)
  put_batch = functools.partial(shard_lib.put_batch, mesh=mesh)
  jaccard = JaccardOracle(data.split.train.csr(data.n_users, data.n_items))
  split = data.split

  if not recipe.trainable:
    params = shard_lib.put_replicated(recipe.fit(cfg, data), mesh)
    scorer = get_scorer(recipe, None, None, cfg.eval.item_chunk)
    ev = lambda heldout, excl: evaluate_ranking(scorer, params, functools.partial(recipe.eval_inputs, arrays),
                                                heldout, excl, data.n_users, data.n_items, ks=cfg.eval.ks,
                                                user_batch=eval_batch, jaccard=jaccard, put=put_batch)
    valid = ev(split.valid, [split.train])
    test = ev(split.test, [split.train, split.valid])
    result = RunResult(test=test, valid=valid, best_epoch=0, epochs=0, history=[], workdir=workdir,
                       wall_s=time.perf_counter() - t_run)
    describe = getattr(recipe, "describe", None)      # e.g. the λ chosen on validation
    write_final(workdir, cfg, result, extra={"fit": describe(params)} if describe else None)
    return result

  model, graphdef, params, rest, opt_state = create_state(cfg, data, recipe, mesh)
  static = recipe.static(cfg)
  if not (resume and ckpt_exists(workdir)):
    params = shard_lib.put_replicated(recipe.init_params(cfg, data, graphdef, params, rest, workdir), mesh)
  scorer = get_scorer(recipe, graphdef, model, cfg.eval.item_chunk)
  del model
  key = jax.random.PRNGKey(cfg.train.seed)
  ckpt = Checkpointer(workdir / "checkpoints")

  def evaluate(p, heldout, excl):
    return evaluate_ranking(scorer, (p, rest), functools.partial(recipe.eval_inputs, arrays), heldout, excl,
                            data.n_users, data.n_items, ks=cfg.eval.ks, user_batch=eval_batch,
                            jaccard=jaccard, put=put_batch)

  meta = {"epoch": -1, "step": 0, "best_epoch": -1, "best": -float("inf"), "bad_epochs": 0, "improvements": 0,
          "history": [], "seed": cfg.train.seed}
  latest = ckpt.latest() if resume else None
  if latest is not None:
    params, opt_state, meta = ckpt.restore(latest, params, opt_state)
    log.info("resumed from %s epoch %d (step %d)", ckpt.directory, meta["epoch"], meta["step"])
  elif resume:
    log.warning("--resume: no checkpoint in %s; starting from scratch", ckpt.directory)
  # Wall time counts the work kept: what earlier calls spent up to their last checkpoint, plus this call.
  t_base = meta.get("elapsed_s", 0.0)

  def elapsed() -> float:
    return t_base + time.perf_counter() - t_run

  steps_per_epoch = -(-data.n_users // B)
  eval_every = eval_interval(cfg, steps_per_epoch)
  select = cfg.eval.select_metric
  stopped_early = False
  epochs_this_call = 0
  outer = tqdm(range(meta["epoch"] + 1, cfg.train.epochs), desc="epochs", unit="ep", disable=not progress,
               dynamic_ncols=True)
  for epoch in outer:
    if should_stop(meta["bad_epochs"], meta["step"], cfg):
      stopped_early = True
      break
    t0 = time.perf_counter()
    step = meta["step"]
    losses, aux_hist = [], collections.defaultdict(list)
    inner = tqdm(pad_batches(epoch_order(cfg.train.seed, epoch, data.n_users), B), total=steps_per_epoch,
                 desc=f"epoch {epoch}", unit="step", leave=False, disable=not progress, dynamic_ncols=True)
    for i, (users, valid) in enumerate(inner):
      batch = {k: arrays[k][users] for k in recipe.batch_fields()}
      batch["valid"] = valid
      params, opt_state, m = train_step(recipe, graphdef, static, params, rest, opt_state, put_batch(batch),
                                        jnp.asarray(step, jnp.int32), key)
      step += 1
      losses.append(m["loss"])
      for k, v in m.items():
        if k != "loss":
          aux_hist[k].append(v)
      if (i + 1) % sync_every == 0:
        current = float(m["loss"])
        if not np.isfinite(current):
          _diverged(epoch, step, ckpt)
        inner.set_postfix(loss=f"{current:.4g}")
    loss_arr = np.asarray(jax.device_get(jnp.stack(losses)))
    if not np.all(np.isfinite(loss_arr)):
      _diverged(epoch, step, ckpt)
    train_s = time.perf_counter() - t0
    record = {"epoch": epoch, "step": step, "loss": float(loss_arr.mean()), "train_s": train_s,
              **{k: float(np.mean(jax.device_get(jnp.stack(v)))) for k, v in aux_hist.items()}}
    last = epoch == cfg.train.epochs - 1
    if (epoch + 1) % eval_every == 0 or last:
      t1 = time.perf_counter()
      valid_metrics = evaluate(params, split.valid, [split.train])
      record["valid"] = valid_metrics
      record["eval_s"] = time.perf_counter() - t1
      value = valid_metrics[select]
      is_best = value > meta["best"]
      if is_best:
        meta["best"], meta["best_epoch"], meta["bad_epochs"] = value, epoch, 0
        meta["improvements"] += 1
      else:
        meta["bad_epochs"] += 1
      outer.set_postfix({select: f"{value:.4f}", "best": f"{meta['best']:.4f}"})
    meta["epoch"], meta["step"] = epoch, step
    meta["history"] = meta["history"] + [record]
    if "valid" in record:                 # checkpoints at evaluated epochs: they carry the metric
      meta["elapsed_s"] = elapsed()
      ckpt.save(epoch, params, opt_state, meta, is_best=is_best)
    write_history(workdir, meta["history"])
    epochs_this_call += 1
    if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
      ckpt.close()
      return RunResult(test={}, valid={}, best_epoch=meta["best_epoch"], epochs=epoch + 1,
                       history=meta["history"], workdir=workdir, wall_s=elapsed())
  ckpt.wait()
  best = meta["best_epoch"]
  if best < 0:
    raise XploError("no epoch was evaluated: set train.epochs >= train.eval_every")
  best_params, _, _ = ckpt.restore(best, params, opt_state)
  t1 = time.perf_counter()
  test = evaluate(best_params, split.test, [split.train, split.valid])
  test_s = time.perf_counter() - t1
  ckpt.close()
  best_valid = next(r["valid"] for r in meta["history"] if r["epoch"] == best)
  result = RunResult(test=test, valid=best_valid, best_epoch=best, epochs=meta["epoch"] + 1,
                     history=meta["history"], workdir=workdir, wall_s=elapsed(), stopped_early=stopped_early)
  write_final(workdir, cfg, result, extra={"test_eval_s": test_s, "steps_per_epoch": steps_per_epoch,
                                            "train_step_traces": trace_count()})
  return result


def ckpt_exists(workdir: Path) -> bool:
  d = Path(workdir) / "checkpoints"
  return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())


def _diverged(epoch: int, step: int, ckpt: Checkpointer):
  ckpt.wait()
  last = ckpt.latest()
  kept = f"the last good checkpoint (epoch {last}) is kept in {ckpt.directory}" if last is not None else \
      "no checkpoint had been written yet"
  ckpt.close()
  raise TrainingDiverged(f"non-finite loss in epoch {epoch} (by step {step}); training stopped; {kept}. "
                         "Lower train.learning_rate or check the data.")


def _environment(mesh) -> dict:
  import flax
  import xplo_jax
  from xplo_jax.preprocess import code_version
  return {"jax": jax.__version__, "flax": flax.__version__, "xplo_jax": xplo_jax.__version__,
          "code_version": code_version(), "backend": jax.default_backend(),
          "devices": [str(d) for d in mesh.devices.flat], "process_count": jax.process_count()}


def write_config(workdir: Path, cfg: Config, data: SubgraphData, mesh, resume: bool) -> None:
  path = workdir / "config.json"
  new = json.loads(json.dumps(config_to_dict(cfg)))      # tuples as lists, as stored
  if resume and path.is_file():
    old = json.loads(path.read_text()).get("config", {})
    ignore = set(EXECUTION_ONLY) | {"train.epochs"}      # a resumed run may get a longer budget
    diff = sorted(f"{s}.{k}" for s in new for k in new[s]
                  if old.get(s, {}).get(k) != new[s][k] and f"{s}.{k}" not in ignore)
    if diff:
      raise ConfigError(f"{path}: --resume with a different config ({', '.join(diff)}); "
                        "resume with the same settings or start a new run")
  if not shard_lib.is_primary():
    return
  atomic_write_json(path, {"config": new, "shards": {"folder": str(data.root), "fingerprint": data.fingerprint},
                           "environment": _environment(mesh)})


def write_history(workdir: Path, history: list) -> None:
  if not shard_lib.is_primary():
    return
  atomic_write_text(workdir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def write_final(workdir: Path, cfg: Config, result: RunResult, extra: Optional[dict] = None) -> None:
  from xplo_jax.reports import run_summary_markdown
  if not shard_lib.is_primary():
    return
  final = {"model": cfg.model.name, "dataset": cfg.data.dataset, "test": result.test, "valid": result.valid,
           "best_epoch": result.best_epoch, "epochs": result.epochs, "stopped_early": result.stopped_early,
           "wall_s": result.wall_s, **(extra or {})}
  atomic_write_json(workdir / "final.json", final)
  atomic_write_text(workdir / "summary.md", run_summary_markdown(cfg, final, result.history))
