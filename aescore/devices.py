"""Which compute device to run on: one rule for scoring, evaluation, training and ``data pairwise``.

``auto`` picks CUDA when PyTorch sees a GPU, else Apple's MPS, else the CPU. A device named
explicitly (``cuda``, ``cuda:1``, ``mps``) that PyTorch cannot use here is a
:class:`~aescore.errors.DeviceError`; a name that is no device at all is a
:class:`~aescore.errors.ConfigError` (setting ``device``). Neither message names a CLI flag.

Import-light: torch is imported inside the functions, so ``aescore --help`` stays fast; and
torch may be absent altogether (the light install, ``pip install aescore``): :func:`torch_installed`
and :func:`cuda_gpu_likely` answer without importing it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import TYPE_CHECKING

from aescore.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # plus "cuda:N"
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def package_installed(name: str) -> bool:
    """Whether the top-level package ``name`` can be imported here, found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # an import hook that refuses it, a broken parent package
        return False


def torch_installed() -> bool:
    """Whether PyTorch is installed (the ``train`` extra), without importing it (~3 s on 2 cores)."""
    return package_installed("torch")


def cuda_gpu_likely() -> bool:
    """Whether this machine seems to have an NVIDIA GPU that CUDA may use, judged without importing
    torch: the driver's device list or device file (Linux; WSL2's ``/dev/dxg``), else ``nvidia-smi`` on the PATH; never on macOS, and
    not when ``CUDA_VISIBLE_DEVICES`` hides every GPU. A yes is confirmed by
    ``torch.cuda.is_available()`` before anything relies on it (:func:`cuda_usable`).

    Why not just ask torch: importing it costs ~3 s on a 2-core machine, more than scoring a
    photo under ONNX Runtime, and on a machine without a GPU the answer is always no."""
    system = str(sys.platform)  # (a plain str: mypy would judge the branches by its own platform)
    if system == "darwin" or os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = "/proc/driver/nvidia/gpus"
    if os.path.isdir(gpus):
        try:
            return bool(os.listdir(gpus))
        except OSError:
            return False
    if system.startswith("linux"):
        # /dev/dxg: WSL2, where the Windows driver serves CUDA and neither of the above exists.
        return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/dxg")
    return shutil.which("nvidia-smi") is not None


def cuda_usable() -> bool:
    """Whether PyTorch is installed and can run on a CUDA GPU here. Imports torch only where
    :func:`cuda_gpu_likely` says there may be a GPU, so a CPU-only machine never pays for it."""
    if not (cuda_gpu_likely() and torch_installed()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    """True when this PyTorch build can run on Apple's Metal (MPS) GPU here."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(spec: str = "auto") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -> the device to use, as a torch device string.

    ``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``. Raises :class:`ConfigError`
    for an unknown name and :class:`DeviceError` for a device PyTorch cannot use here.
    """
    import torch

    name = str(spec).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if name == "cpu":
        return name
    if name == "mps":
        if not mps_available():
            raise DeviceError(name, "Apple MPS is not available to PyTorch on this machine")
        return name
    index = _CUDA_INDEX.match(name)
    if name == "cuda" or index:
        if not torch.cuda.is_available():
            raise DeviceError(name, "no CUDA GPU is available to PyTorch on this machine")
        if index and int(index.group(1)) >= torch.cuda.device_count():
            raise DeviceError(name, f"PyTorch sees {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
        return name
    raise ConfigError("device", f"must be auto, cpu, cuda, cuda:N or mps, not {spec!r}")


def torch_device(spec: str = "auto", local_rank: int | None = None) -> "torch.device":
    """:func:`resolve_device` as a ``torch.device``; a bare ``cuda`` takes GPU ``local_rank`` when
    given (one process per GPU under ``torchrun``), else the current GPU."""
    import torch

    name = resolve_device(spec)
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device() if local_rank is None else local_rank)
    return torch.device(name)
