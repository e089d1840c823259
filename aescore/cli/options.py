"""Options that several commands share, declared once as ``Annotated`` aliases for Typer.

A command uses them as parameter types (``model: ModelOption = None``), so ``--model``,
``--device`` and ``--json`` have one spelling, one help text and one set of accepted values
everywhere.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Optional

import typer

__all__ = ["DEVICE_HELP", "DeviceOption", "JsonOption", "ModelOption", "OptionalDeviceOption", "XmpStyle", "XmpStyleOption",
           "check_device"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")

DEVICE_HELP = (
    "Where the network runs: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps. "
    "GPUs score in float16 and need PyTorch (pip install 'aescore\\[train]'); a run under ONNX Runtime "
    "(score/rank --runtime; without PyTorch, or on a machine without a CUDA GPU) stays on the CPU."
)


def check_device(value: Optional[str]) -> Optional[str]:
    """``--device``'s value if it names a device kind aescore knows (whether the machine has it
    is checked when the model is loaded), else a usage error (one line, exit 2) before anything
    runs. The same rule as :func:`aescore.devices.resolve_device`'s."""
    if value is not None and not _DEVICE.match(value):
        from aescore.errors import UsageError

        raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {value!r}")
    return value


ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", "--weights", metavar="NAME|FILE", show_default=False, rich_help_panel="Model",
    help="Model name (see `aescore models`) or .safetensors/.json file. Default: the default model.",
)]
_DEVICE_OPTION = typer.Option("--device", metavar="DEVICE", callback=check_device, rich_help_panel="Model", help=DEVICE_HELP)
DeviceOption = Annotated[str, _DEVICE_OPTION]  # default "auto"
OptionalDeviceOption = Annotated[Optional[str], _DEVICE_OPTION]  # default None: the run's configuration decides (train)
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]


class XmpStyle(str, Enum):
    """How a new XMP sidecar is named (existing sidecars are updated where they are)."""

    lightroom = "lightroom"
    darktable = "darktable"


XmpStyleOption = Annotated[XmpStyle, typer.Option(
    "--xmp-style", rich_help_panel="Actions", show_default=True,
    help="Name of a sidecar aescore creates for a photo that has none: lightroom IMG_1.xmp, darktable "
         "IMG_1.JPG.xmp. Sidecars a photo already has are updated in their own style (both, where both exist).",
)]
