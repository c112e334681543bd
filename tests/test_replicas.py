"""Replicas (xplo_jax/replicas.py): the vmapped multi-seed step equals N independent single-seed steps.

  .venv/bin/python -m pytest tests/test_replicas.py -q

Tiny planted preset (300 users, 200 items, 5 steps per epoch with a padded last
batch), XploVAE with P = 16, H = 32: every comparison is against the sequential
code path (``train_step`` / ``train_and_evaluate``) on the same data.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax import sharding as shard_lib
from xplo_jax.config import apply_overrides
from xplo_jax.errors import ConfigError
from xplo_jax.recipes import get_recipe
from xplo_jax.replicas import grid_hparams, init_replicas, replica_configs, replica_step, train_replicas, unstack
from xplo_jax.train import pad_batches, create_state, epoch_order, trace_count, train_and_evaluate, train_step

from tiny import small_xplovae_cfg as small_cfg


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _batch(data, arrays, recipe, seed, index):
  """Batch ``index`` of epoch 0 of the sequential run with ``seed`` (host arrays)."""
  users, valid = list(pad_batches(epoch_order(seed, 0, data.n_users), 64))[index]
  b = {k: arrays[k][users] for k in recipe.batch_fields()}
  b["valid"] = valid
  return b


def _sequential(cfg, data, recipe, mesh, seed, batches):
  """(initial params, params after ``train_step`` on ``batches`` at steps 0, 1, ..., losses), ``train.seed = seed``."""
  _, gd, params, rest, opt = create_state(apply_overrides(cfg, {"train.seed": seed}), data, recipe, mesh)
  init = _leaves(params)                      # copied to host before the step donates the buffers
  static = recipe.static(cfg)
  losses = []
  for step, b in enumerate(batches):
    params, opt, m = train_step(recipe, gd, static, params, rest, opt, b, jnp.int32(step), jax.random.PRNGKey(seed))
    losses.append(float(m["loss"]))
  return init, _leaves(params), losses


def test_vmapped_step_equals_independent_steps(tiny_data):
  """3 seeds: init = create_state per seed (exactly); 2 vmapped steps = 2 train_step calls per seed."""
  cfg, recipe, mesh = small_cfg(), get_recipe("xplovae"), shard_lib.make_mesh()
  arrays = tiny_data.all_users()
  seeds = (0, 1, 2)
  indices = (0, 4)                                    # a full batch, then the padded last one
  per_seed = {s: [_batch(tiny_data, arrays, recipe, s, i) for i in indices] for s in seeds}
  refs = {s: _sequential(cfg, tiny_data, recipe, mesh, s, per_seed[s]) for s in seeds}

  reps = init_replicas(cfg, tiny_data, recipe, seeds, mesh)
  assert reps.rest_axis is None                                # graph arrays kept once, not N times
  assert all(x.shape[0] == tiny_data.n_items for x in jax.tree.leaves(reps.rest))    # [|V|, ...], not [N, ...]
  for r, s in enumerate(seeds):
    for a, b in zip(_leaves(unstack(reps.params, r)), refs[s][0]):
      np.testing.assert_array_equal(a, b)
  # The stack really holds three initializations.
  assert not all(np.array_equal(a, b) for a, b in zip(refs[0][0], refs[1][0]))

  params, opt, rest = reps.params, reps.opt_state, reps.rest
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  rep_losses = []
  for step in range(len(indices)):
    batch = {k: np.stack([per_seed[s][step][k] for s in seeds]) for k in per_seed[0][0]}
    params, opt, m = replica_step(recipe, reps.graphdef, recipe.static(cfg), params, rest, opt, batch,
                                  jnp.int32(step), keys, rest_axis=reps.rest_axis)
    assert m["loss"].shape == (3,)
    rep_losses.append(np.asarray(m["loss"]))
  for r, s in enumerate(seeds):
    _, ref_params, ref_losses = refs[s]
    np.testing.assert_allclose([l[r] for l in rep_losses], ref_losses, rtol=1e-5)
    for a, b in zip(_leaves(unstack(params, r)), ref_params):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The replicas did not all take the same step (different batches, keys, initializations).
  assert len({round(float(l), 3) for l in rep_losses[1]}) == 3


def test_train_replicas_equals_sequential_runs(tiny_data, tmp_path):
  """Seeds (0, 1) in one compiled step = two train_and_evaluate runs: losses, valid/test metrics, files."""
  cfg = small_cfg()
  reps = train_replicas(cfg, tmp_path / "rep", tiny_data, (0, 1), progress=False)
  assert [r.workdir.name for r in reps] == ["seed0", "seed1"]
  for s, rep in zip((0, 1), reps):
    seq = train_and_evaluate(small_cfg(f"train.seed={s}"), tmp_path / f"seq{s}", tiny_data, progress=False)
    np.testing.assert_allclose([h["loss"] for h in rep.history], [h["loss"] for h in seq.history], rtol=1e-5)
    for a, b in zip(rep.history, seq.history):
      for k, v in b["valid"].items():
        assert a["valid"][k] == pytest.approx(v, abs=1e-5), (a["epoch"], k)
    assert rep.best_epoch == seq.best_epoch and rep.epochs == seq.epochs == 3
    assert set(rep.test) == set(seq.test)
    for k, v in seq.test.items():
      assert rep.test[k] == pytest.approx(v, abs=1e-5), k
    # The same files, and a config.json that experiments' run_point recognizes as this point's.
    d = tmp_path / "rep" / f"seed{s}"
    for f in ("config.json", "metrics.jsonl", "final.json", "summary.md"):
      assert (d / f).is_file(), f
    conf = lambda p: json.loads((p / "config.json").read_text())["config"]
    assert conf(d) == conf(tmp_path / f"seq{s}")
    final = json.loads((d / "final.json").read_text())
    assert final["best_epoch"] == seq.best_epoch and final["test"] == rep.test
    assert len((d / "metrics.jsonl").read_text().splitlines()) == 3
  assert reps[0].history[0]["loss"] != reps[1].history[0]["loss"]


def test_grid_with_early_stopping_compiles_once(tiny_data, tmp_path):
  """A learning-rate grid (0 and 1e-3) as replicas: one compile over all epochs (padded batches included);
  the lr = 0 replica stops early on its own (patience 2) while the other trains on and equals its sequential run."""
  cfg = small_cfg("train.epochs=5", "train.patience=2", "train.min_steps=0")
  before = trace_count("replica_step")
  reps = train_replicas(cfg, tmp_path / "grid", tiny_data, (0,), grid={"train.learning_rate": (0.0, 1e-3)},
                        progress=False)
  assert trace_count("replica_step") - before == 1
  assert tiny_data.n_users % cfg.train.batch_size != 0        # every epoch ends with a padded batch
  frozen, trained = reps
  assert frozen.workdir.parent.name == "train.learning_rate=0.0" and frozen.workdir.name == "seed0"
  # lr = 0 never improves: stopped after `patience` evaluations (the rule test_train pins for one run),
  # and its parameters never moved while the other replica's did in the same compiled step.
  assert frozen.stopped_early and frozen.epochs == 3 and frozen.best_epoch == 0
  assert [h["valid"] for h in frozen.history] == [frozen.history[0]["valid"]] * 3
  assert not trained.stopped_early and trained.epochs == 5
  assert (tmp_path / "grid" / "train.learning_rate=0.0" / "seed0" / "final.json").is_file()
  seq = train_and_evaluate(cfg, tmp_path / "seq", tiny_data, progress=False)          # lr = 1e-3, seed 0
  assert (trained.epochs, trained.best_epoch, trained.stopped_early) == (seq.epochs, seq.best_epoch,
                                                                          seq.stopped_early)
  np.testing.assert_allclose([h["loss"] for h in trained.history], [h["loss"] for h in seq.history], rtol=1e-5)
  for k, v in seq.test.items():
    assert trained.test[k] == pytest.approx(v, abs=1e-5), k


def test_beta_grid_enters_each_replica(tiny_data):
  """β as a per-replica array: same seed and batch, so ll and KL agree across replicas and
  replica r's loss is β_r·KL − ll with its own β_r (XploVAE's objective, averaged over users)."""
  recipe, mesh = get_recipe("xplovae"), shard_lib.make_mesh()
  betas = (0.2, 0.7)
  cfgs = [small_cfg(f"train.beta={b}") for b in betas]
  static, hp = grid_hparams([recipe.static(c) for c in cfgs])
  assert list(hp) == ["beta"] and hp["beta"].dtype == np.float32
  reps = init_replicas(cfgs, tiny_data, recipe, (0, 0), mesh)
  b = _batch(tiny_data, tiny_data.all_users(), recipe, 0, 0)
  batch = {k: np.stack([v, v]) for k, v in b.items()}
  keys = jnp.stack([jax.random.PRNGKey(0)] * 2)
  _, _, m = replica_step(recipe, reps.graphdef, static, reps.params, reps.rest, reps.opt_state, batch,
                         jnp.int32(0), keys, {k: jnp.asarray(v) for k, v in hp.items()}, rest_axis=reps.rest_axis)
  m = {k: np.asarray(v) for k, v in m.items()}
  np.testing.assert_allclose(m["beta"], betas, rtol=1e-7)
  np.testing.assert_allclose(m["ll"][1], m["ll"][0], rtol=1e-6)
  np.testing.assert_allclose(m["kl"][1], m["kl"][0], rtol=1e-6)
  np.testing.assert_allclose(m["loss"], np.float32(betas) * m["kl"] - m["ll"], rtol=1e-5)
  assert m["loss"][1] - m["loss"][0] == pytest.approx(0.5 * m["kl"][0], rel=1e-4)


def test_replicas_that_cannot_share_a_step_are_refused():
  recipe = get_recipe("xplovae")
  # A string setting (negatives mode) changes the traced program: refused, not silently shared.
  with pytest.raises(ConfigError, match="negatives"):
    grid_hparams([recipe.static(small_cfg()), recipe.static(small_cfg("train.negatives=uniform"))])
  with pytest.raises(ConfigError, match="anneal_steps"):       # an int: a compile-time constant
    grid_hparams([recipe.static(small_cfg()), recipe.static(small_cfg("train.beta_anneal_steps=7"))])
  with pytest.raises(ConfigError, match="distinct"):
    replica_configs(small_cfg(), (0, 0))
  from xplo_jax.replicas import _check_shared
  with pytest.raises(ConfigError, match="train.batch_size"):
    _check_shared([small_cfg(), small_cfg("train.batch_size=32")])
  names = [n for n, _ in replica_configs(small_cfg(), (3, 4), {"train.beta": (0.1, 0.2)})]
  assert names == ["train.beta=0.1/seed3", "train.beta=0.1/seed4", "train.beta=0.2/seed3", "train.beta=0.2/seed4"]


def test_different_graphs_are_refused(tiny_data):
  """A model setting that changes shapes (hidden width) cannot be vmapped."""
  with pytest.raises(ConfigError, match="different model graphs"):
    init_replicas([small_cfg(), small_cfg("model.hidden_dim=24")], tiny_data, get_recipe("xplovae"), (0, 1),
                  shard_lib.make_mesh())
