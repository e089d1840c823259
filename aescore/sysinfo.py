"""Facts about the machine that defaults depend on, and a fast process exit for the CLI."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, which containers restrict), else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def compute_threads() -> int:
    """Threads for the network's own work: ``OMP_NUM_THREADS`` when set to a positive integer (the
    usual knob, and what Ray sets in each worker to the CPUs it reserved), else
    :func:`usable_cores`. Without it, each of several workers on one machine would start a thread
    per core of the whole machine, and they would fight over the cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return usable_cores()


def prefer_passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``), unless the user chose.

    Why: while scoring on a CPU, decode worker processes and the network's OpenMP threads share
    the cores. Spin-waiting threads (the default) burn the CPU time the decoders need, between
    layers and while the network waits for the next batch. Measured with benchmarks/bench_rank.py
    on 2 cores: rank 11.6 images/s passive against 5.2 spinning (docs/performance.md). The OpenMP
    runtime reads the variable once, when torch loads, so this must run before ``import torch``;
    afterwards it changes nothing in this process (child processes still inherit it).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def fast_exit(code: int = 0) -> NoReturn:
    """Flush stdout and stderr, then end the process at once with ``os._exit(code)``.

    Why: after torch is imported, Python's normal shutdown (module teardown, garbage collection of
    every tensor and module) takes about 2 s on 2 cores, longer than scoring one photo. Skipping it
    is safe only once every output is complete: call this after results are printed and flushed,
    sidecars and copies written, and the score cache closed. ``atexit`` handlers do not run. A
    reader that has gone away (``aescore rank | head -1``) is not an error here.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # BrokenPipeError from a closed pipe; an already closed stream
            pass
    os._exit(code)
