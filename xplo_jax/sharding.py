"""Data parallelism over a device mesh: built once, used by every step.

A 1-D ``Mesh`` over all devices with axis ``data``: batches are split along their
leading axis (``P('data')``), parameters and optimizer state replicated (``P()``).
A single device is the 1-device mesh of the same code. Multi-host: call
``maybe_initialize_distributed()`` first (it runs ``jax.distributed.initialize()``
when the launcher set the usual environment); every process then feeds its own
slice of each global batch (``make_array_from_process_local_data``).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

__all__ = ["make_mesh", "replicated", "batch_sharding", "put_replicated", "put_batch", "to_host",
           "is_primary", "maybe_initialize_distributed"]

_DIST_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES",
             "MEGASCALE_COORDINATOR_ADDRESS")


def maybe_initialize_distributed() -> bool:
  """``jax.distributed.initialize()`` when a multi-process launcher is detected.

  Recognized: JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID), SLURM,
  and Cloud TPU pods (auto-detected by JAX). Returns True when initialized.
  """
  if os.environ.get("XPLO_JAX_NO_DISTRIBUTED"):
    return False
  if not any(os.environ.get(k) for k in _DIST_ENV):
    return False
  kwargs = {}
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ.get("JAX_NUM_PROCESSES", "1")),
                  process_id=int(os.environ.get("JAX_PROCESS_ID", "0")))
  jax.distributed.initialize(**kwargs)
  log.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A 1-D mesh ('data',) over the first ``num_devices`` devices (default: all)."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, {len(devices)} available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def put_replicated(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))


def put_batch(tree, mesh: Mesh):
  """Host arrays of the GLOBAL batch (the same on every process) → arrays sharded on 'data'.

  With several processes each one transfers only the rows its devices hold (the
  mesh orders devices by process, so a process owns a contiguous block of rows).
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  n_proc, pid = jax.process_count(), jax.process_index()

  def local(x):
    x = np.asarray(x)
    rows = x.shape[0] // n_proc
    return jax.make_array_from_process_local_data(sharding, x[pid * rows:(pid + 1) * rows], x.shape)

  return jax.tree.map(local, tree)


def to_host(x) -> np.ndarray:
  """A (possibly multi-process, sharded) array as one numpy array on every process."""
  if jax.process_count() > 1 and not getattr(x, "is_fully_addressable", True):
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def is_primary() -> bool:
  """True on the process that writes run files (process 0)."""
  return jax.process_index() == 0
