"""The training loop: no recompiles, determinism, resume, divergence, sharding, learning."""

from __future__ import annotations

import dataclasses
import json
import time
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from xplo_jax import recipes
from xplo_jax.train import TrainingDiverged, trace_count, train_and_evaluate

from tiny import SMALL_XPLOVAE as SMALL, small_xplovae_cfg as small_cfg

REPO = Path(__file__).resolve().parents[1]


def test_no_recompiles_after_the_first_step(tiny_data, tmp_path):
  cfg = small_cfg("model.latent_dim=13")        # a shape no other test compiles
  before = trace_count()
  res = train_and_evaluate(cfg, tmp_path / "r", tiny_data, progress=False)
  steps = sum(1 for _ in res.history) * -(-tiny_data.n_users // cfg.train.batch_size)
  assert steps >= 12 and tiny_data.n_users % cfg.train.batch_size != 0      # a padded last batch is included
  assert trace_count() - before == 1


def test_same_seed_same_run(tiny_data, tmp_path):
  a = train_and_evaluate(small_cfg(), tmp_path / "a", tiny_data, progress=False)
  b = train_and_evaluate(small_cfg(), tmp_path / "b", tiny_data, progress=False)
  assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
  assert a.test == b.test
  c = train_and_evaluate(small_cfg("train.seed=1"), tmp_path / "c", tiny_data, progress=False)
  assert [r["loss"] for r in a.history] != [r["loss"] for r in c.history]


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
  cfg = small_cfg("train.epochs=4")
  full = train_and_evaluate(cfg, tmp_path / "full", tiny_data, progress=False)
  part = train_and_evaluate(cfg, tmp_path / "part", tiny_data, progress=False, stop_after_epochs=2)
  assert part.test == {} and part.epochs == 2
  t0 = time.perf_counter()
  resumed = train_and_evaluate(cfg, tmp_path / "part", tiny_data, progress=False, resume=True)
  own_s = time.perf_counter() - t0
  assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
  # The reported wall time adds the first call's time up to its checkpoint to the resumed call's.
  assert resumed.wall_s > own_s
  assert resumed.test == full.test and resumed.best_epoch == full.best_epoch
  lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2, 3]
  with pytest.raises(Exception, match="different config"):
    train_and_evaluate(small_cfg("train.epochs=4", "train.learning_rate=0.01"), tmp_path / "part", tiny_data,
                       progress=False, resume=True)


@dataclasses.dataclass(frozen=True)
class NaNAfterFirstEpoch(recipes.XploVAERecipe):
  """XploVAE whose loss turns NaN from step 6 on (the tiny set has 5 steps per epoch)."""
  name = "nan-xplovae"

  def loss(self, model, batch, step, key, st):
    loss, aux = super().loss(model, batch, step, key, st)
    return jnp.where(step >= 6, jnp.nan, loss), aux


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
  monkeypatch.setitem(recipes.RECIPES, "nan-xplovae", NaNAfterFirstEpoch())
  with pytest.raises(TrainingDiverged, match=r"non-finite loss in epoch 1 .*last good checkpoint \(epoch 0\)"):
    train_and_evaluate(small_cfg("model.name=nan-xplovae"), tmp_path / "r", tiny_data, progress=False)
  assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir() if p.name.isdigit()) == ["0"]


def test_popularity_recipe_equals_hand_count(tiny_data, tmp_path):
  res = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  split = tiny_data.split
  deg = np.bincount(split.train.item, minlength=split.n_items)
  order = sorted(range(split.n_items), key=lambda i: (-deg[i], i))
  excl = {(u, i) for p in (split.train, split.valid) for u, i in zip(p.user.tolist(), p.item.tolist())}
  held = {}
  for u, i in zip(split.test.user.tolist(), split.test.item.tolist()):
    held.setdefault(u, set()).add(i)
  rec = []
  for u, items in held.items():
    top = [i for i in order if (u, i) not in excl][:20]
    rec.append(len(set(top) & items) / min(20, len(items)))
  assert res.test["recall@20"] == pytest.approx(np.mean(rec), rel=1e-6)


SHARDED = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from xplo_jax.config import Config, apply_overrides
    from xplo_jax.data import load_split
    from xplo_jax.preprocess import preprocess
    from xplo_jax.sharding import make_mesh
    from xplo_jax.train import train_and_evaluate
    assert jax.device_count() == 4, jax.devices()
    cfg = apply_overrides(Config(), json.loads(sys.argv[1]))
    data = preprocess(load_split(cfg.data), cfg.preprocess, sys.argv[2] + "/shards", progress=False)
    out = {}
    for n in (1, 4):
      r = train_and_evaluate(cfg, sys.argv[2] + f"/run{n}", data, progress=False, mesh=make_mesh(n))
      out[n] = {"loss": [h["loss"] for h in r.history], "test": r.test}
    print(json.dumps(out))
""")


def test_sharded_step_equals_single_device(tmp_path):
  """Data parallel over 4 host CPU devices = the 1-device run (same code, other mesh)."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, "-c", SHARDED, json.dumps(SMALL + ["train.epochs=2"]), str(tmp_path)],
                     capture_output=True, text=True, env=env, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  out = json.loads(p.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["4"]["loss"], out["1"]["loss"], rtol=1e-5)
  for k, v in out["1"]["test"].items():
    assert out["4"]["test"][k] == pytest.approx(v, abs=1e-5), k


def test_early_stopping_counts_evaluations_after_min_steps(tiny_data, tmp_path):
  # A zero learning rate never improves: the run stops after `patience` evaluations...
  cfg = small_cfg("train.epochs=50", "train.learning_rate=0", "train.patience=2", "train.min_steps=0")
  res = train_and_evaluate(cfg, tmp_path / "a", tiny_data, progress=False)
  assert res.stopped_early and res.epochs == 3 and res.best_epoch == 0
  # ...but not before min_steps (5 steps per epoch here).
  cfg = small_cfg("train.epochs=50", "train.learning_rate=0", "train.patience=2", "train.min_steps=40")
  res = train_and_evaluate(cfg, tmp_path / "b", tiny_data, progress=False)
  assert res.stopped_early and res.epochs == 8


def test_xplovae_beats_popularity_on_planted_data(tiny_data, tmp_path):
  """Within a small budget (500 steps on the tiny planted preset), NDCG@20 well above popularity."""
  cfg = small_cfg("train.epochs=100", "train.patience=1000", "train.eval_every=0")
  xplo = train_and_evaluate(cfg, tmp_path / "x", tiny_data, progress=False)
  pop = train_and_evaluate(small_cfg("model.name=popularity"), tmp_path / "p", tiny_data, progress=False)
  assert xplo.test["ndcg@20"] > 1.5 * pop.test["ndcg@20"], (xplo.test["ndcg@20"], pop.test["ndcg@20"])
  assert xplo.test["recall@20"] > 1.5 * pop.test["recall@20"]


MULTIHOST = textwrap.dedent("""
    import os, sys, json
    os.environ.update(JAX_COORDINATOR_ADDRESS=sys.argv[2], JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=sys.argv[1],
                      JAX_PLATFORMS="cpu")
    from xplo_jax.sharding import maybe_initialize_distributed, make_mesh
    assert maybe_initialize_distributed()
    import jax
    from xplo_jax.config import Config, apply_overrides
    from xplo_jax.preprocess import open_shards
    from xplo_jax.train import train_and_evaluate
    cfg = apply_overrides(Config(), json.loads(sys.argv[3]))
    r = train_and_evaluate(cfg, sys.argv[5], open_shards(sys.argv[4]), progress=False, mesh=make_mesh())
    print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(),
                      "loss": [h["loss"] for h in r.history], "test": r.test}))
""")


def test_two_processes_on_localhost_equal_one_process(tiny_data, tmp_path):
  """Multi-host data parallelism through jax.distributed (CPU collectives: gloo) = one process."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  overrides = SMALL + ["train.epochs=2"]
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("XLA_FLAGS", None)
  args = [f"localhost:{port}", json.dumps(overrides), str(tiny_data.root), str(tmp_path / "mh")]
  procs = [subprocess.Popen([sys.executable, "-c", MULTIHOST, str(i), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  assert got[0]["processes"] == 2 and got[0]["devices"] == 2
  single = train_and_evaluate(small_cfg("train.epochs=2"), tmp_path / "one", tiny_data, progress=False)
  for g in got:
    np.testing.assert_allclose(g["loss"], [h["loss"] for h in single.history], rtol=1e-5)
    for k, v in single.test.items():
      assert g["test"][k] == pytest.approx(v, abs=1e-5), k
  assert (tmp_path / "mh" / "final.json").is_file()          # written once, by process 0


def test_train_step_makes_no_hidden_transfers(tiny_data):
  """Once inputs are on the device, a step moves nothing between host and device implicitly."""
  import jax
  from xplo_jax import sharding as S
  from xplo_jax.train import create_state, train_step
  cfg = small_cfg()
  recipe = recipes.get_recipe("xplovae")
  mesh = S.make_mesh()
  _, gd, params, rest, opt = create_state(cfg, tiny_data, recipe, mesh)
  arrays = tiny_data.all_users()
  batch = {k: arrays[k][:64] for k in recipe.batch_fields()}
  batch["valid"] = np.ones(64, bool)
  batch = S.put_batch(batch, mesh)
  step, key = jax.device_put(jnp.int32(0)), jax.device_put(jax.random.PRNGKey(0))
  st = recipe.static(cfg)
  params, opt, m = train_step(recipe, gd, st, params, rest, opt, batch, step, key)      # compiles
  with jax.transfer_guard("disallow"):
    params, opt, m = train_step(recipe, gd, st, params, rest, opt, batch, step, key)
  assert np.isfinite(float(m["loss"]))
