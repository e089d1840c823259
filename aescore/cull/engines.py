"""Where the photos still to compute go: the local inference core, or Ray actors (issue 27).

The cached pipeline (:mod:`aescore.cull.pipeline`) looks up the cache, writes the outputs, the
cache rows and the sidecars on the driver whatever the engine; only the photos that miss
something are handed to an engine, which runs the one inference core
(:func:`aescore.inference.core.infer`) on them:

* :attr:`Engine.local`: in this process, with decode workers (``Settings.workers``);
* :attr:`Engine.ray`: in Ray Data actors, on this machine or a Ray cluster
  (:mod:`aescore.cull.ray_engine`; ``pip install 'aescore[ray]'``), ``Settings.workers`` actors
  each decoding and scoring its share with its own copy of the model.

This module imports no Ray: choosing and checking an engine costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from aescore.errors import ConfigError
from aescore.inference.onnx_runtime import Runtime

__all__ = ["Engine", "RayOptions", "check_engine_options", "RAY_MISSING"]

#: What a run under Ray without Ray installed is told (the problem of a ``ConfigError("engine", ...)``:
#: the CLI prints ``--engine ray needs Ray: ...``).
RAY_MISSING = "ray needs Ray: pip install 'aescore[ray]'"


class Engine(str, Enum):
    """What computes the photos the cache does not have (see the module docstring)."""

    local = "local"
    ray = "ray"


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine runs (ignored by the local engine).

    ``address``: the Ray cluster to join (``host:port`` of its head node's GCS, as ``ray start
    --head`` prints it); None: ``RAY_ADDRESS``, else a cluster started with ``ray start`` on this machine, else a Ray
    started here for the run and stopped after it (Ray's own rule). ``gpus_per_worker``: GPUs
    each actor reserves (0: CPU actors; a fraction shares a GPU); ``cpus_per_worker``: CPUs each
    actor reserves, and the threads its network uses.
    """

    address: str | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0


def check_engine_options(engine: Engine | str, ray: RayOptions, device: str, runtime: Runtime, workers: int | None = None) -> Engine:
    """``engine`` as an :class:`Engine` when the run can use it, else a :class:`ConfigError`
    naming the setting (Ray not installed, no workers, a GPU device without GPUs per worker,
    ONNX Runtime on GPU actors). Import-light: looks Ray up without importing it."""
    try:
        chosen = Engine(engine)
    except ValueError:
        raise ConfigError("engine", f"must be one of {', '.join(e.value for e in Engine)}") from None
    if chosen is not Engine.ray:
        return chosen
    from aescore.devices import package_installed

    if not package_installed("ray"):
        raise ConfigError("engine", RAY_MISSING)
    if workers is not None and workers < 1:
        raise ConfigError("workers", "must be >= 1 under the ray engine (the number of Ray workers)")
    if not (math.isfinite(ray.gpus_per_worker) and ray.gpus_per_worker >= 0):
        raise ConfigError("gpus_per_worker", "must be >= 0")
    if not (math.isfinite(ray.cpus_per_worker) and ray.cpus_per_worker > 0):
        raise ConfigError("cpus_per_worker", "must be > 0")
    # Ray hides the CUDA GPUs from an actor that reserved none: a CUDA device needs GPUs per worker.
    if str(device).strip().lower().startswith("cuda") and ray.gpus_per_worker <= 0:
        raise ConfigError("gpus_per_worker", f"must be > 0 for device {device} under the ray engine")
    if ray.gpus_per_worker > 0 and runtime is Runtime.onnx:
        raise ConfigError("runtime", "onnx: runs on the CPU only (asked for GPUs per worker)")
    return chosen
