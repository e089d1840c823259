"""DDP helpers for runs under ``torchrun``: process-group setup, rank guards, gathering results.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and ``TORCHELASTIC_RUN_ID``); under
``torchrun`` we join the process group (NCCL on CUDA, gloo on CPU) and train through DDP, also with
a single process (``--nproc_per_node 1``: the same code path as several). Only rank 0 writes files
and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launched: bool = False  # started by torchrun (even as a single process)

    @property
    def enabled(self) -> bool:
        """True when training through DDP: several processes, or any run started by ``torchrun``."""
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and logs (rank 0)."""
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Rank information from the ``torchrun`` environment (a single process when unset)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        launched="TORCHELASTIC_RUN_ID" in os.environ,  # set by torchrun for every process it starts
    )


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (with one process or several).

    NCCL for CUDA devices, gloo on CPU. Also pins this process to its local GPU. Idempotent.
    """
    info = env_dist_info()
    if not info.enabled:
        return info
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def cleanup_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few float64 numbers over ranks (loss sums, image counts)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (keeps ranks stepping in lock-step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` on every rank, in rank order (``[obj]`` for a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out

