"""Scoring through ONNX Runtime, without importing torch (issue 16: one photo in under 2 s).

``import torch`` alone took 2.7-4.7 s on a 2-core machine, more than the whole budget of
``aescore score one.jpg``; ONNX Runtime imports in ~0.2 s. So a model card may name an **ONNX program exported
beside its weights** (``card["onnx"]``), made by :func:`aescore.inference.onnx_export.export_onnx` from the same verified
weights, BatchNorm folded, with the model's own view pooling inside the graph. It is checked by
sha256 like the weights (and the sha256 of the weights it was exported from must be the card's),
and its outputs match the PyTorch path within 1e-4 (``tests/test_onnx_runtime.py``).

Which runtime runs a model (:func:`choose_runtime`, ``--runtime``):

* ``onnx``: ONNX Runtime on the CPU: needs the card's ONNX program and the ``onnxruntime``
  package (a dependency of every install); refused (one line) for what it cannot do (TTA, a GPU
  device, a region map its program lacks).
* ``torch``: PyTorch: GPUs, multi-crop TTA, every architecture. Needs the ``train`` extra
  (``pip install 'aescore[train]'``); without it, a one-line refusal naming that command.
* ``auto`` (default): ``torch`` on a machine where PyTorch is installed and sees a CUDA GPU (found
  without importing torch on machines without one: :func:`aescore.devices.cuda_usable`); else
  ``onnx`` where it can run; else ``torch`` (a model without an ONNX program, TTA, ``--device
  cuda``), refused in one line when PyTorch is not installed.

Decoding runs in worker processes under either runtime (:func:`aescore.inference.core.infer`), so
ONNX Runtime is as fast on a big folder as PyTorch was (docs/performance.md, section 12): there is
no photo count above which ``auto`` switches runtimes.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aescore.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    from aescore.data.transforms import Preprocess

__all__ = ["ONNX_INPUTS", "ONNX_OUTPUTS", "OnnxModel", "Runtime", "choose_runtime", "load_onnx_model", "onnx_unusable",
           "program_outputs"]

_MAX_ONNX_BYTES = 512 << 20
#: The program's input and output names (:mod:`aescore.inference.onnx_export` writes them):
#: ``region_map`` since issue 26 (programs exported before lack it; the card's ``onnx.outputs`` says).
ONNX_INPUTS = ("whole", "crops")
ONNX_OUTPUTS = ("logits", "embedding", "faults", "region_map")


class Runtime(str, Enum):
    """Which library runs the network (see the module docstring)."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"


def _program_path(weights_path: Path, card: dict[str, Any]) -> Path | None:
    """The ONNX program the card names, beside the weights (a bare file name), or None."""
    block = card.get("onnx")
    if not isinstance(block, dict):
        return None
    name = block.get("file")
    if not isinstance(name, str) or name != os.path.basename(name) or name in ("", ".", "..") or not name.endswith(".onnx"):
        raise WeightsError(f"{weights_path.with_suffix('.json')}: invalid model card: onnx.file must be a file name ending in .onnx")
    return weights_path.parent / name


def onnx_unusable(weights_path: str | os.PathLike[str], card: dict[str, Any]) -> str | None:
    """Why this model cannot run under ONNX Runtime here (a phrase), or None when it can."""
    path = _program_path(Path(weights_path), card)
    if path is None:
        return f"model {card.get('name') or Path(weights_path).stem} has no ONNX program (scripts/export_onnx.py makes one)"
    block = card["onnx"]
    if block.get("weights_sha256") != card.get("sha256"):
        return f"{path.name} was exported from other weights than the card's (export it again)"
    if not path.is_file():
        return f"{path} not found"
    from aescore.devices import package_installed

    if not package_installed("onnxruntime"):
        return "the onnxruntime package is not installed (pip install onnxruntime)"
    return None


def program_outputs(card: dict[str, Any]) -> frozenset[str]:
    """The outputs the card's ONNX program gives (its ``onnx.outputs``), without reading the program."""
    block = card.get("onnx")
    outputs = block.get("outputs") if isinstance(block, dict) else None
    return frozenset(o for o in outputs if isinstance(o, str)) if isinstance(outputs, list) else frozenset()


def choose_runtime(
    runtime: Runtime, weights_path: str | os.PathLike[str], card: dict[str, Any], device: str,
    want: frozenset[str], tta_crops: int | None,
) -> Runtime:
    """The runtime for a run (``torch`` or ``onnx``) per the rules of the module docstring.
    Raises :class:`ConfigError` when ``onnx`` was asked for and cannot run this, or when PyTorch
    is needed and not installed (the message ends in the pip command that adds it)."""
    from aescore.devices import cuda_usable, torch_installed
    from aescore.errors import MissingExtra

    if runtime is Runtime.torch:
        if not torch_installed():
            raise MissingExtra("runtime", "torch")
        return Runtime.torch
    device = str(device).strip().lower()
    why = None
    # What ONNX Runtime cannot run, and the setting to name when PyTorch would be needed for it.
    if device not in ("auto", "cpu"):
        why, setting, lead = f"runs on the CPU only (asked for --device {device})", "device", device
    elif tta_crops:
        why, setting, lead = "has no multi-crop TTA (--tta-crops)", "tta_crops", ""
    else:
        why = onnx_unusable(weights_path, card)
        name = str(card.get("name") or Path(weights_path).stem)
        said = why[len(f"model {name} "):] if why and why.startswith(f"model {name} ") else f": {why}"
        setting, lead = "model", f"{name} {said}; scoring it".replace(" : ", ": ")
    lacks_map = "region_map" in want and "region_map" not in program_outputs(card)
    if runtime is Runtime.onnx:
        if not why and lacks_map:
            why = "its program has no region map (export it again, or use --runtime torch)"
        if why:
            raise ConfigError("runtime", f"onnx: {why}")
        return Runtime.onnx
    if why:
        if not torch_installed():
            raise MissingExtra(setting, lead)
        return Runtime.torch
    if device == "auto" and cuda_usable():
        return Runtime.torch  # a CUDA GPU is PyTorch's (its start-up is then the small part)
    if lacks_map and torch_installed():
        return Runtime.torch  # a program exported before region maps: PyTorch still draws them
    return Runtime.onnx  # (without torch, such a program runs and the region map is left out)


class OnnxModel:
    """A model's ONNX program in an ONNX Runtime session, with the interface of
    :class:`aescore.inference.core.LoadedModel` that :func:`~aescore.inference.core.infer` uses
    (numpy in and out)."""

    runtime = Runtime.onnx
    device = "cpu"

    def __init__(self, session: Any, preprocess: "Preprocess", card: dict[str, Any], path: Path | None = None) -> None:
        self.session, self.preprocess, self.card, self.path = session, preprocess, card, path
        self.outputs = frozenset(o.name for o in session.get_outputs())
        self.forward_calls = 0

    @property
    def sha256(self) -> str:
        """The weights' sha256 (the program was exported from them): the cache key is the same."""
        return str(self.card["sha256"])

    def forward(self, x: Any, want: frozenset[str]) -> dict[str, Any]:
        """``[B, 3, H, W]`` float32 (or batched :class:`DetailViews` of arrays) -> the asked-for
        outputs as float32 numpy: ``p_high`` ``[B]``, ``embedding``, ``faults`` (probabilities),
        ``region_map`` (the whole frame's per-region logits, where the program has them)."""
        import numpy as np

        from aescore.data.transforms import DetailViews
        from aescore.tensorutil import ensure_finite_scores

        self.forward_calls += 1
        feeds = {"whole": x.whole, "crops": x.crops} if isinstance(x, DetailViews) else {"whole": x}
        names = ["logits", *(n for n in ("embedding", "faults", "region_map") if n in want and n in self.outputs)]
        got = dict(zip(names, self.session.run(names, feeds)))
        logits = got.pop("logits").astype(np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out = {"p_high": e[:, 1] / e.sum(axis=1)}
        ensure_finite_scores(out["p_high"], str(self.card.get("name") or "the model"))
        if "embedding" in got:
            out["embedding"] = got["embedding"].astype(np.float32)
        if "faults" in got:
            out["faults"] = (1.0 / (1.0 + np.exp(-got["faults"].astype(np.float32)))).astype(np.float32)
        if "region_map" in got:
            out["region_map"] = got["region_map"].astype(np.float32)
        return out


def load_onnx_model(weights_path: str | os.PathLike[str], card: dict[str, Any]) -> OnnxModel:
    """The card's ONNX program, verified by sha256, in an ONNX Runtime session on the CPU threads
    this process may use (:func:`aescore.sysinfo.compute_threads`: ``OMP_NUM_THREADS``, which Ray
    sets per worker, else its cores); :class:`WeightsError` when it cannot be used (see :func:`onnx_unusable`)."""
    from aescore.data.transforms import Preprocess
    from aescore.sysinfo import compute_threads
    from aescore.weights import read_verified

    why = onnx_unusable(weights_path, card)
    if why:
        raise WeightsError(f"cannot run under ONNX Runtime: {why}")
    path = _program_path(Path(weights_path), card)
    assert path is not None
    if path.stat().st_size > _MAX_ONNX_BYTES:
        raise WeightsError(f"{path}: larger than {_MAX_ONNX_BYTES >> 20} MB; refusing to read it")
    data = read_verified(path, str(card["onnx"]["sha256"]))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = compute_threads()
    options.inter_op_num_threads = 1
    # Spinning threads would take the cores from the decode processes between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise WeightsError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {str(exc)[:200]})") from None
    return OnnxModel(session, Preprocess.from_card(card["preprocess"]), card, Path(weights_path))
