"""Replicas: N seeds (or hyperparameter points) of one model trained in one compiled step.

  from xplo_jax.replicas import train_replicas          # a library module: no command of its own
  results = train_replicas(cfg, "runs/seeds", data, seeds=(0, 1, 2, 3))       # -> runs/seeds/seed<s>/
  results = train_replicas(cfg, "runs/lr", data, (0,), grid={"train.learning_rate": (1e-3, 3e-3)})

  python benchmarks/replicas_bench.py --end-to-end     # speed-up over sequential runs
  .venv/bin/python -m pytest tests/test_replicas.py -q  # replicas = sequential runs

Where a model is small, one optimizer step is dominated by per-step overhead
(dispatch, host batch assembly, small kernels that leave cores idle), so N
sequential runs cost about N times one run. ``replica_step`` instead maps the
shared update rule ``xplo_jax.train.step_fn`` over a leading replica axis with
``jax.vmap`` and jits the result once:

    replica_step = jit(vmap(step_fn(recipe, graphdef, static(hparams), ·, step), in_axes=(0, rest_axis, 0, 0, 0, 0)))
    over (params[N], rest, opt_state[N], batch[N, B, ...], key[N], hparams[N]); the step index is shared.

* Replica r is exactly the sequential run ``train_and_evaluate`` with
  ``train.seed = seeds[r]``: its parameters are built by ``create_state`` for that
  seed, its epoch order is ``epoch_order(seeds[r], epoch, n)``, its base key is
  ``PRNGKey(seeds[r])`` and the step index is shared (all replicas take the same
  number of steps). Batches therefore differ per replica and are stacked
  [N, B, ...]. The non-trainable state (``rest``: kNN graph arrays) is the same for
  every seed, so it is kept once (``rest_axis = None``); should a recipe's rest
  differ per seed it is stacked (``rest_axis = 0``).
* Hyperparameter grids: a hyperparameter can vary across replicas only where the
  recipe reads it from its ``static`` settings as a float that enters the step
  as arithmetic (XploVAE: ``learning_rate``, ``beta``; Mult-VAE: ``learning_rate``,
  ``beta_cap``). Such fields are passed as [N] float32 arrays and substituted into
  the static settings inside the traced step (``dataclasses.replace``), so the
  compiled program is shared; the value is the same float32 the sequential run
  uses, so a grid replica equals the sequential run with that value. Anything that
  changes shapes or Python control flow (widths, negatives mode, schedule names,
  integer step counts, dropout rates stored on the module) is a compile-time
  constant: configurations that differ there are refused with a ``ConfigError``
  (run them as separate ``train_and_evaluate`` / ``train_replicas`` calls).
* ``train_replicas`` is the multi-replica ``train_and_evaluate``: the same
  evaluation cadence (``eval_every``), early stopping rule (patience counted in
  evaluations, not before ``min_steps``) and best-epoch selection, per replica;
  replicas that stopped keep being stepped (the vmapped shapes are static) but
  their results are frozen at their best parameters; the loop ends when every
  replica has stopped or the epoch budget is spent. Each replica's validation and
  test metrics come from the shared evaluator on its own (unstacked) parameters.
  Per replica it writes config.json, metrics.jsonl, final.json and summary.md, as
  a sequential run does, under ``workdir/seed<s>`` (with a grid:
  ``workdir/<field=value,...>/seed<s>``), so experiments can read either.
* Not supported: checkpoints and resumption (an interrupted replica run starts
  over; resumption is per sequential run only: ``train_and_evaluate(resume=True)``
  on a replica folder starts from scratch, since it holds no ``checkpoints/``),
  and multi-process meshes.

Trace counting: ``replica_step`` counts its traces under the name
``"replica_step"`` in train.py's counter, so ``xplo_jax.train.trace_count("replica_step")``
proves there is one compile per run.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from xplo_jax import sharding as shard_lib
from xplo_jax import train as train_lib
from xplo_jax.config import Config, apply_overrides
from xplo_jax.errors import ConfigError, XploError
from xplo_jax.evaluate import JaccardOracle, evaluate_ranking
from xplo_jax.preprocess.shards import SubgraphData
from xplo_jax.recipes import Recipe, get_recipe
from xplo_jax.train import RunResult, TrainingDiverged, create_state, epoch_order, step_fn

__all__ = ["Replicas", "replica_configs", "grid_hparams", "init_replicas", "replica_step", "unstack",
           "train_replicas"]

# Sections and train fields every replica must share: they fix the data, the batches' shapes
# and the loop (a replica differs from another only by its seed and float loss settings).
_SHARED_SECTIONS = ("data", "preprocess", "eval")
_SHARED_TRAIN = ("batch_size", "epochs", "patience", "min_steps", "eval_every", "log_every")


class Replicas(NamedTuple):
  """N model states stacked on a leading replica axis (``create_state``'s results, plus the rest axis).

  Attributes:
    model: replica 0's module (the scorer is built from it; the graph is the same for all).
    graphdef: the shared NNX graph definition.
    params: ``nnx.Param`` state, every leaf [N, ...].
    rest: the other state: one copy when ``rest_axis`` is None, else stacked [N, ...].
    opt_state: optimizer state, every leaf [N, ...].
    rest_axis: None (rest shared) or 0 (rest stacked).
  """
  model: nnx.Module
  graphdef: Any
  params: Any
  rest: Any
  opt_state: Any
  rest_axis: Optional[int]


def replica_configs(cfg: Config, seeds: Sequence[int], grid: Optional[Mapping[str, Sequence]] = None
                    ) -> list[tuple[str, Config]]:
  """The replicas' (folder name, config): every grid point × every seed, seeds innermost.

  Args:
    cfg: the base config.
    seeds: values of ``train.seed``.
    grid: optional ``{"section.field": values}``; the replicas are the Cartesian product of
      the values (e.g. ``{"train.learning_rate": (1e-3, 3e-3)}``).

  Returns:
    [(relative folder, config)]: ``seed<s>``, or ``<field=value,...>/seed<s>`` with a grid.
  """
  if not seeds:
    raise ConfigError("train_replicas: give at least one seed")
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"train_replicas: seeds must be distinct, got {list(seeds)}")
  grid = dict(grid or {})
  keys = list(grid)
  out = []
  for values in itertools.product(*(tuple(grid[k]) for k in keys)):
    point = dict(zip(keys, values))
    prefix = ",".join(f"{k}={v}" for k, v in point.items())
    for s in seeds:
      c = apply_overrides(cfg, {**point, "train.seed": int(s)})
      out.append((f"{prefix}/seed{s}" if prefix else f"seed{s}", c))
  return out


def _check_shared(cfgs: Sequence[Config]) -> None:
  c0 = cfgs[0]
  for c in cfgs[1:]:
    bad = [s for s in _SHARED_SECTIONS if getattr(c, s) != getattr(c0, s)]
    bad += [f"train.{f}" for f in _SHARED_TRAIN if getattr(c.train, f) != getattr(c0.train, f)]
    bad += ["model.name"] if c.model.name != c0.model.name else []
    if bad:
      raise ConfigError(f"replicas must share {', '.join(bad)} (they fix the data, the batch shapes and the loop)")


def grid_hparams(statics: Sequence[Any]) -> tuple[Any, dict[str, np.ndarray]]:
  """Splits per-replica static settings into one shared template and [N] float arrays.

  Fields that differ across replicas must be floats (they become traced arrays);
  everything else must be equal (it is a static argument of the compiled step).

  Returns:
    (template static, {field: [N] float32}) — the dict is empty when all are equal.
  """
  s0 = statics[0]
  if all(s == s0 for s in statics):
    return s0, {}
  if not dataclasses.is_dataclass(s0):
    raise ConfigError("replicas differ in the recipe's static settings, which are not a dataclass")
  hp = {}
  for f in dataclasses.fields(s0):
    vals = [getattr(s, f.name) for s in statics]
    if all(v == vals[0] for v in vals):
      continue
    if not all(isinstance(v, float) for v in vals):
      raise ConfigError(f"replicas differ in the static setting {f.name!r} ({vals[:4]}...), which is not a "
                        "float: it is a compile-time constant; run those configurations separately")
    hp[f.name] = np.asarray(vals, np.float32)
  return s0, hp


def _stack(trees: list):
  # On the host, once per run: device-side stacking would compile one program per leaf
  # shape (or one jitted program per tree), seconds on CPU for a copy of a few MB.
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


@jax.jit
def _take(tree, r: jax.Array):
  return jax.tree.map(lambda x: x[r], tree)


def unstack(tree, r: int):
  """Replica ``r`` of a stacked pytree (a fresh copy: safe from donation of the stack).

  ``r`` is traced, so every replica shares one compiled slice.
  """
  return _take(tree, jnp.asarray(r, jnp.int32))


def _same_tree(trees: Sequence[Any]) -> bool:
  t0 = trees[0]
  s0 = jax.tree.structure(t0)
  l0 = [np.asarray(x) for x in jax.tree.leaves(t0)]
  for t in trees[1:]:
    if jax.tree.structure(t) != s0:
      return False
    if not all(a.shape == np.shape(b) and np.array_equal(a, np.asarray(b)) for a, b in zip(l0, jax.tree.leaves(t))):
      return False
  return True


def init_replicas(cfg: Config | Sequence[Config], data: SubgraphData, recipe: Recipe, seeds: Sequence[int],
                  mesh, *, workdirs: Optional[Sequence[Path]] = None) -> Replicas:
  """N model states, replica r built exactly as ``create_state`` builds it for ``train.seed = seeds[r]``.

  Args:
    cfg: the config, or one config per replica (grid points); ``train.seed`` is set to ``seeds[r]``.
    data: the preprocessed shards.
    recipe: the model's recipe (trainable).
    seeds: [N] seeds.
    mesh: device mesh; every state is replicated on it.
    workdirs: when given, each replica's ``recipe.init_params`` hook runs with its folder, as
      ``train_and_evaluate`` runs it before training (e.g. NeuMF pretraining).

  Returns:
    ``Replicas`` with params and opt_state stacked [N, ...] and rest kept once when it is
    the same for every replica.
  """
  cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg] * len(seeds)
  if len(cfgs) != len(seeds):
    raise ValueError(f"{len(cfgs)} configs for {len(seeds)} seeds")
  cfgs = [apply_overrides(c, {"train.seed": int(s)}) for c, s in zip(cfgs, seeds)]
  states = [create_state(c, data, recipe, mesh) for c in cfgs]
  graphdefs = [s[1] for s in states]
  if any(g != graphdefs[0] for g in graphdefs[1:]):
    raise ConfigError("replicas build different model graphs (a shape or module setting differs): "
                      "only the seed and float loss settings may vary across replicas")
  graphdef = graphdefs[0]
  params = [s[2] for s in states]
  if workdirs is not None:
    params = [recipe.init_params(c, data, graphdef, p, s[3], Path(w)) for c, p, s, w in
              zip(cfgs, params, states, workdirs)]
  rests = [s[3] for s in states]
  shared_rest = _same_tree(rests)
  rest = rests[0] if shared_rest else shard_lib.put_replicated(_stack(rests), mesh)
  return Replicas(model=states[0][0], graphdef=graphdef,
                  params=shard_lib.put_replicated(_stack(params), mesh), rest=rest,
                  opt_state=shard_lib.put_replicated(_stack([s[4] for s in states]), mesh),
                  rest_axis=None if shared_rest else 0)


@functools.partial(jax.jit, static_argnames=("recipe", "graphdef", "static", "rest_axis"),
                   donate_argnames=("params", "opt_state"))
def replica_step(recipe: Recipe, graphdef, static, params, rest, opt_state, batch: dict, step: jax.Array,
                 keys: jax.Array, hparams: Optional[dict] = None, *, rest_axis: Optional[int] = None):
  """One optimizer step of every replica: ``vmap(step_fn)`` over the leading replica axis.

  Args:
    recipe, graphdef, static: as for ``train.train_step`` (static; ``static`` is the
      template whose ``hparams`` fields are replaced per replica inside the trace).
    params: stacked trainable state, leaves [N, ...] (donated).
    rest: the other state, one copy (``rest_axis=None``) or stacked (``rest_axis=0``).
    opt_state: stacked optimizer state (donated).
    batch: per-replica host batches stacked [N, B, ...] (``valid`` [N, B]).
    step: int32 step index, shared by all replicas.
    keys: [N, 2] base PRNG keys, ``PRNGKey(seeds[r])``; replica r uses ``fold_in(keys[r], step)``.
    hparams: optional {static field: [N] float32}, per-replica values of float settings.
    rest_axis: None or 0 (static).

  Returns:
    (params, opt_state, metrics) with every leaf [N, ...]; metrics[k] is [N].
  """
  train_lib.note_trace("replica_step")          # runs only while tracing
  hparams = hparams or {}

  def one(p, r, o, b, k, hp):
    st = dataclasses.replace(static, **hp) if hp else static
    return step_fn(recipe, graphdef, st, p, r, o, b, step, k)

  return jax.vmap(one, in_axes=(0, rest_axis, 0, 0, 0, 0))(params, rest, opt_state, batch, keys, hparams)


@dataclasses.dataclass
class _Track:
  """Early-stopping bookkeeping of one replica (the ``meta`` of train_and_evaluate)."""
  best: float = -float("inf")
  best_epoch: int = -1
  bad_epochs: int = 0
  improvements: int = 0
  last_epoch: int = -1
  active: bool = True
  stopped_early: bool = False
  diverged: Optional[str] = None
  best_params: Any = None
  history: list = dataclasses.field(default_factory=list)


def train_replicas(cfg: Config, workdir, data: SubgraphData, seeds: Sequence[int], *,
                   grid: Optional[Mapping[str, Sequence]] = None, progress: bool = True,
                   mesh=None) -> list[RunResult]:
  """Trains N replicas of ``cfg.model.name`` in one compiled step; each equals its sequential run.

  The multi-seed ``train_and_evaluate``: replica r follows the batches, randomness,
  evaluation cadence and early stopping of ``train_and_evaluate`` with
  ``train.seed = seeds[r]`` (and its grid point), and its best-epoch parameters
  are scored on the test set with the shared evaluator.

  Args:
    cfg: the resolved config (a trainable model).
    workdir: the parent folder; replica folders are ``seed<s>`` (``<point>/seed<s>`` with a grid).
    data: the preprocessed shards.
    seeds: the seeds (``train.seed``) of the replicas.
    grid: optional ``{"section.field": values}`` of float loss settings (e.g.
      ``train.learning_rate``, ``train.beta``); replicas = grid points × seeds.
    progress: tqdm bars.
    mesh: a device mesh (default: all devices); batches are sharded on 'data' along
      their batch axis, states replicated.

  Returns:
    One ``RunResult`` per replica, in ``replica_configs`` order. ``wall_s`` is the wall
    time of the whole replica run (shared by all replicas).

  Raises:
    ConfigError: replicas that cannot share one compiled step, or a non-trainable model.
    TrainingDiverged: after the other replicas are finished and written, when some
      replica's loss became non-finite (its folder holds metrics.jsonl but no final.json).
  """
  t_run = time.perf_counter()
  if jax.process_count() > 1:
    raise XploError("train_replicas runs in one process; use train_and_evaluate per seed on multi-host meshes")
  progress = progress and shard_lib.is_primary()
  workdir = Path(workdir)
  recipe = get_recipe(cfg.model.name)
  if not recipe.trainable:
    raise ConfigError(f"model {cfg.model.name!r} is fitted, not trained: there is no step to replicate")
  points = replica_configs(cfg, seeds, grid)
  names, cfgs = [p[0] for p in points], [p[1] for p in points]
  _check_shared(cfgs)
  run_seeds = [c.train.seed for c in cfgs]
  dirs = [workdir / n for n in names]
  n_rep = len(cfgs)
  mesh = mesh or shard_lib.make_mesh()
  B = cfg.train.batch_size
  eval_batch, sync_every = train_lib.mesh_batching(cfg, mesh)
  static, hparams = grid_hparams([recipe.static(c) for c in cfgs])
  for d, c in zip(dirs, cfgs):
    d.mkdir(parents=True, exist_ok=True)
    # A final.json left by an earlier run of this folder would be taken for this run's
    # (experiments reuse a point whose config matches) even if this replica then diverges.
    (d / "final.json").unlink(missing_ok=True)
    train_lib.write_config(d, c, data, mesh, resume=False)

  arrays = data.all_users()
  arrays["users"] = np.arange(data.n_users, dtype=np.int32)
  put_batch = functools.partial(shard_lib.put_batch, mesh=mesh)
  stacked_sharding = NamedSharding(mesh, P(None, "data"))      # [N, B, ...]: replicas whole, users split
  jaccard = JaccardOracle(data.split.train.csr(data.n_users, data.n_items))
  split = data.split

  reps = init_replicas(cfgs, data, recipe, run_seeds, mesh, workdirs=dirs)
  graphdef, params, rest, opt_state, rest_axis = reps.graphdef, reps.params, reps.rest, reps.opt_state, \
      reps.rest_axis
  scorer = train_lib.get_scorer(recipe, graphdef, reps.model, cfg.eval.item_chunk)
  del reps
  keys = shard_lib.put_replicated(jnp.stack([jax.random.PRNGKey(s) for s in run_seeds]), mesh)
  hparams = shard_lib.put_replicated({k: jnp.asarray(v) for k, v in hparams.items()}, mesh)

  def rest_of(r):
    return rest if rest_axis is None else unstack(rest, r)

  def evaluate(p, r, heldout, excl):
    return evaluate_ranking(scorer, (p, rest_of(r)), functools.partial(recipe.eval_inputs, arrays), heldout, excl,
                            data.n_users, data.n_items, ks=cfg.eval.ks, user_batch=eval_batch, jaccard=jaccard,
                            put=put_batch)

  tracks = [_Track() for _ in range(n_rep)]
  steps_per_epoch = -(-data.n_users // B)
  # The cadence of train_and_evaluate (same expression): ~20 steps between evaluations by default.
  eval_every = train_lib.eval_interval(cfg, steps_per_epoch)
  select = cfg.eval.select_metric
  step = 0
  outer = tqdm(range(cfg.train.epochs), desc=f"epochs ×{n_rep}", unit="ep", disable=not progress,
               dynamic_ncols=True)
  for epoch in outer:
    for t in tracks:                   # the stop rule train_and_evaluate applies at the top of an epoch
      if t.active and train_lib.should_stop(t.bad_epochs, step, cfg):
        t.active, t.stopped_early = False, True
    active = [r for r, t in enumerate(tracks) if t.active]
    if not active:
      break
    t0 = time.perf_counter()
    metrics = []
    orders = [train_lib.pad_batches(epoch_order(s, epoch, data.n_users), B) for s in run_seeds]
    inner = tqdm(zip(*orders), total=steps_per_epoch, desc=f"epoch {epoch}", unit="step", leave=False,
                 disable=not progress, dynamic_ncols=True)
    for i, per_rep in enumerate(inner):
      users = np.stack([u for u, _ in per_rep])                                 # [N, B]
      batch = {k: arrays[k][users] for k in recipe.batch_fields()}
      batch["valid"] = np.stack([v for _, v in per_rep])
      params, opt_state, m = replica_step(recipe, graphdef, static, params, rest, opt_state,
                                          jax.device_put(batch, stacked_sharding), jnp.asarray(step, jnp.int32),
                                          keys, hparams, rest_axis=rest_axis)
      step += 1
      metrics.append(m)
      if (i + 1) % sync_every == 0:     # bounds the dispatch queue; shows the active replicas' mean loss
        inner.set_postfix(loss=f"{float(np.mean(np.asarray(m['loss'])[active])):.4g}")
    hist = {k: np.asarray(jax.device_get(jnp.stack([m[k] for m in metrics]))) for k in metrics[0]}  # [steps, N]
    train_s = time.perf_counter() - t0
    last = epoch == cfg.train.epochs - 1
    do_eval = (epoch + 1) % eval_every == 0 or last
    for r in active:
      t = tracks[r]
      col = {k: np.ascontiguousarray(v[:, r]) for k, v in hist.items()}
      if not np.all(np.isfinite(col["loss"])):
        t.active = False
        t.diverged = (f"non-finite loss in epoch {epoch} (by step {step}); this replica stopped; "
                      f"its best parameters were epoch {t.best_epoch}")
        continue
      record = {"epoch": epoch, "step": step, "loss": float(col["loss"].mean()), "train_s": train_s,
                **{k: float(np.mean(v)) for k, v in col.items() if k != "loss"}}
      if do_eval:
        t1 = time.perf_counter()
        p_r = unstack(params, r)
        valid_metrics = evaluate(p_r, r, split.valid, [split.train])
        record["valid"] = valid_metrics
        record["eval_s"] = time.perf_counter() - t1
        value = valid_metrics[select]
        if value > t.best:
          t.best, t.best_epoch, t.bad_epochs, t.best_params = value, epoch, 0, p_r
          t.improvements += 1
        else:
          t.bad_epochs += 1
      t.last_epoch = epoch
      t.history = t.history + [record]
      train_lib.write_history(dirs[r], t.history)
    outer.set_postfix({"active": sum(t.active for t in tracks),
                       "best": " ".join(f"{t.best:.3f}" for t in tracks[:4]) + (" …" if n_rep > 4 else "")})

  results = []
  for r, t in enumerate(tracks):
    if t.diverged:
      results.append(None)
      continue
    if t.best_epoch < 0:
      raise XploError("no epoch was evaluated: set train.epochs >= train.eval_every")
    t1 = time.perf_counter()
    test = evaluate(t.best_params, r, split.test, [split.train, split.valid])
    test_s = time.perf_counter() - t1
    best_valid = next(h["valid"] for h in t.history if h["epoch"] == t.best_epoch)
    res = RunResult(test=test, valid=best_valid, best_epoch=t.best_epoch, epochs=t.last_epoch + 1,
                    history=t.history, workdir=dirs[r], wall_s=time.perf_counter() - t_run,
                    stopped_early=t.stopped_early)
    train_lib.write_final(dirs[r], cfgs[r], res, extra={
        "test_eval_s": test_s, "steps_per_epoch": steps_per_epoch,
        "replica_step_traces": train_lib.trace_count("replica_step"),
        "replicas": {"n": n_rep, "index": r, "folders": names, "hparams": sorted(hparams)}})
    results.append(res)
  bad = [(names[r], t.diverged) for r, t in enumerate(tracks) if t.diverged]
  if bad:
    raise TrainingDiverged("; ".join(f"{n}: {msg}" for n, msg in bad) +
                           ". The other replicas finished and were written. Lower train.learning_rate.")
  return results
